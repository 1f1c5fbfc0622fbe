"""Multi-process training via torchrun: NCCL on GPUs, gloo on CPUs; rank 0 alone writes.

``torchrun --nproc_per_node 2 -m atrous train CONFIG`` starts one process per rank; each reads
RANK / LOCAL_RANK / WORLD_SIZE from the environment (across machines, torchrun's rendezvous flags
``--nnodes --node_rank --rdzv_backend c10d --rdzv_endpoint HOST:PORT`` join them into one job).
Without those variables everything runs in one process.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

__all__ = [
    "DistInfo",
    "backend_for",
    "init_distributed",
    "shutdown_distributed",
    "average_buffers",
    "barrier",
    "broadcast_int",
    "broadcast_floats",
    "all_ranks",
    "unwrap",
    "launched",
    "local_rank",
    "spawn_local",
]


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the job."""

    rank: int = 0
    world_size: int = 1
    # where collective tensors live: NCCL reduces CUDA tensors only, gloo CPU ones
    comm_device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        """True for the process that writes files and prints."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        """True when more than one process takes part."""
        return self.world_size > 1


def launched() -> bool:
    """True inside a multi-process job (torchrun or :func:`spawn_local`)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def local_rank() -> int:
    """This process's rank on its machine (its GPU under torchrun); 0 in one process."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def broadcast_int(value: int, info: DistInfo) -> int:
    """Rank 0's ``value`` on every rank (decisions that must agree, e.g. epochs planned)."""
    if not info.enabled:
        return value
    tensor = torch.tensor([value], dtype=torch.int64, device=info.comm_device)
    dist.broadcast(tensor, src=0)
    return int(tensor.item())


def broadcast_floats(values: list[float], info: DistInfo) -> list[float]:
    """Rank 0's ``values`` on every rank (results every rank should report alike)."""
    if not info.enabled:
        return list(values)
    tensor = torch.tensor(values, dtype=torch.float64, device=info.comm_device)
    dist.broadcast(tensor, src=0)
    return [float(v) for v in tensor.tolist()]


def all_ranks(flag: bool, info: DistInfo) -> bool:
    """True when ``flag`` holds on every rank (a verdict all ranks must act on together)."""
    if not info.enabled:
        return flag
    tensor = torch.tensor([int(flag)], dtype=torch.int64, device=info.comm_device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MIN)
    return bool(tensor.item())


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside a DistributedDataParallel wrapper (or the model itself)."""
    if isinstance(model, nn.parallel.DistributedDataParallel):
        return model.module
    return model


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _spawned(rank: int, world: int, port: int, fn: Callable[..., Any], args: tuple) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world),
    )
    fn(*args)


def spawn_local(fn: Callable[..., Any], processes: int, *args: Any) -> None:
    """Run ``fn(*args)`` in ``processes`` local processes joined into one job, as torchrun
    would start them; returns when all have finished (re-raising a worker's failure)."""
    import torch.multiprocessing as mp

    mp.spawn(_spawned, args=(processes, _free_port(), fn, args), nprocs=processes, join=True)


def backend_for(device: torch.device) -> str:
    """The process-group backend for ``device``: NCCL between GPUs, gloo between CPUs."""
    return "nccl" if device.type == "cuda" else "gloo"


def init_distributed(device: torch.device | None = None) -> DistInfo:
    """Join the torchrun job if WORLD_SIZE > 1 (NCCL when ``device`` is a GPU, which becomes this
    process's current device; gloo otherwise); else a 1-process DistInfo."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    device = device or torch.device("cpu")
    backend = backend_for(device)
    if backend == "nccl":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend)
    comm = device if backend == "nccl" else torch.device("cpu")
    return DistInfo(rank=dist.get_rank(), world_size=dist.get_world_size(), comm_device=comm)


def shutdown_distributed(info: DistInfo) -> None:
    """Leave the process group (after a final barrier)."""
    if info.enabled and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    """Wait for every rank (no-op in one process)."""
    if info.enabled:
        dist.barrier()


def average_buffers(model: nn.Module, info: DistInfo) -> None:
    """Average floating-point buffers (BatchNorm running statistics) over ranks.

    Gradients are averaged by DDP, so parameters agree; BN statistics are per-rank, and this
    makes every rank (and the checkpoint) hold the same, all-data statistics.
    """
    if not info.enabled:
        return
    for buffer in model.buffers():
        if torch.is_floating_point(buffer):
            dist.all_reduce(buffer, op=dist.ReduceOp.SUM)
            buffer.div_(info.world_size)
