"""Where a run computes and in which precision: ``train.device`` and ``train.amp``.

:func:`resolve_placement` turns the config's names into a :class:`Placement` (a torch device plus
an autocast dtype) and refuses what this machine cannot do with one line. The loop asks the
placement to move batches (non-blocking from pinned memory on CUDA), to run the forward pass
under autocast, and to step the optimizer through a GradScaler (active for fp16 only). Nothing
here needs a GPU to import or to run on CPU; the CUDA branches run unchanged when one exists.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from atrous.errors import ConfigError

__all__ = [
    "Placement",
    "resolve_device",
    "resolve_placement",
    "loader_settings",
    "to_device",
    "float_logits",
    "optimizer_step",
    "move_optimizer_state",
]

Amp = Literal["off", "bf16", "fp16"]
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
_MAX_AUTO_WORKERS = 8


@dataclass(frozen=True)
class Placement:
    """A run's device and mixed precision: ``amp`` 'off' (float32), 'bf16' or 'fp16'."""

    device: torch.device = torch.device("cpu")
    amp: Amp = "off"

    @property
    def dtype(self) -> torch.dtype | None:
        """The autocast dtype (None for float32)."""
        return _DTYPES.get(self.amp)

    @property
    def pin_memory(self) -> bool:
        """Page-locked host batches: only CUDA copies from them asynchronously."""
        return self.device.type == "cuda"

    @property
    def accelerated(self) -> bool:
        """True off the CPU (the host then only prepares data)."""
        return self.device.type != "cpu"

    def autocast(self) -> contextlib.AbstractContextManager:
        """The forward pass's autocast context (a no-op context for float32)."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def grad_scaler(self) -> torch.amp.GradScaler:
        """Loss scaling for fp16 (whose gradients underflow); disabled, a pass-through, else."""
        return torch.amp.GradScaler(self.device.type, enabled=self.amp == "fp16")

    def describe(self) -> str:
        """'cpu', 'cuda:0 bf16' ...: for the start-of-run line and reports."""
        return str(self.device) + ("" if self.amp == "off" else f" {self.amp}")


def _unavailable(name: str, what: str) -> ConfigError:
    return ConfigError(
        f"train.device={name}: {what} (torch {torch.__version__}); "
        "use train.device=cpu or train.device=auto"
    )


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """The torch device ``train.device`` names here: 'auto' takes CUDA, then MPS, else the CPU;
    'cuda' is this process's GPU (``local_rank`` modulo the count, one per torchrun rank)."""
    cuda = torch.cuda.is_available()
    if name == "auto":
        if cuda:
            return torch.device("cuda", local_rank % torch.cuda.device_count())
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "mps":
        if not torch.backends.mps.is_available():
            raise _unavailable(name, "no Apple MPS device is available")
        return torch.device("mps")
    if not cuda:
        raise _unavailable(name, "no CUDA GPU is visible to this process")
    count = torch.cuda.device_count()
    index = int(name.partition(":")[2] or local_rank % count)
    if index >= count:
        raise _unavailable(name, f"this process sees {count} CUDA GPU(s), cuda:0-{count - 1}")
    return torch.device("cuda", index)


def resolve_placement(device: str, amp: Amp, local_rank: int = 0) -> Placement:
    """Resolve ``train.device`` and check ``train.amp`` against it (one-line ConfigErrors)."""
    where = resolve_device(device, local_rank)
    if amp == "fp16" and where.type == "cpu":
        raise ConfigError(
            f"train.amp=fp16 on {device} ({where}): fp16 autocast needs a GPU; "
            "use train.amp=bf16 on CPUs"
        )
    if amp == "bf16" and where.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ConfigError(
            f"train.amp=bf16: {torch.cuda.get_device_name(where)} has no bf16 support; "
            "use train.amp=fp16"
        )
    return Placement(where, amp)


def loader_settings(
    placement: Placement, workers: int, workers_set: bool, cores: int
) -> tuple[int, bool]:
    """DataLoader ``(num_workers, pin_memory)`` for the device. On the CPU the workers would
    share the cores the model trains on: ``data.workers`` as given. On an accelerator the host
    only prepares batches: unless ``data.workers`` was set, one worker per core (at most 8)."""
    if placement.accelerated and not workers_set:
        workers = max(1, min(_MAX_AUTO_WORKERS, cores))
    return workers, placement.pin_memory


def to_device(
    batch: torch.Tensor, target: torch.Tensor, placement: Placement, channels_last: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch and its labels on the run's device (non-blocking from pinned memory), the batch
    in channels-last layout when asked."""
    if placement.accelerated:
        batch = batch.to(placement.device, non_blocking=placement.pin_memory)
        target = target.to(placement.device, non_blocking=placement.pin_memory)
    if channels_last:
        batch = batch.contiguous(memory_format=torch.channels_last)
    return batch, target


def float_logits(output: Any) -> Any:
    """Logits (a tensor, or the ``{"out", "aux"}`` dict) as float32: losses are computed in
    full precision whatever autocast produced."""
    if isinstance(output, dict):
        return {k: v.float() for k, v in output.items()}
    return output.float()


def optimizer_step(
    loss: torch.Tensor,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    grad_clip: float | None,
) -> None:
    """Backward and update through ``scaler`` (unscaled before clipping; a disabled scaler is
    the plain backward/step)."""
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    if grad_clip:
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    scaler.step(optimizer)
    scaler.update()


def _tensors(state: dict[str, Any]) -> Iterator[tuple[str, torch.Tensor]]:
    return ((k, v) for k, v in state.items() if isinstance(v, torch.Tensor))


def move_optimizer_state(optimizer: torch.optim.Optimizer) -> None:
    """Put every optimizer state tensor (momenta, fused step counts) on its parameter's device:
    a checkpoint holds them on the CPU, a resumed run may train anywhere."""
    for group in optimizer.param_groups:
        for param in group["params"]:
            state = optimizer.state.get(param, {})
            for key, value in list(_tensors(state)):
                state[key] = value.to(param.device)
