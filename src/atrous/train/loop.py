"""The training loop as library functions: ``train_one_epoch`` and ``fit``.

``fit`` runs the remaining epochs of a :class:`~atrous.train.run.Run`: ``train_one_epoch``,
validation through the one evaluator, atomic checkpoints (each epoch and best), metrics, the
time budget. Ctrl-C saves ``interrupted.pt`` and returns. A loss that goes non-finite stops the
run with one line (:class:`NonFiniteLoss`), before that update: the checkpoints keep the last
good weights.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.progress import Progress, TaskID
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler

from atrous.checkpoint import save_checkpoint
from atrous.errors import AtrousError
from atrous.models.deeplab import set_output_stride
from atrous.train.budget import TimeBudget
from atrous.train.device import Placement, float_logits, optimizer_step, to_device
from atrous.train.distributed import (
    all_ranks,
    average_buffers,
    barrier,
    broadcast_floats,
    unwrap,
)
from atrous.train.metrics import MetricsLog, StepReporter, progress_bar
from atrous.train.resume import _rng_state, _set_rng_state, train_state
from atrous.train.run import Run, build_card, build_optimizer
from atrous.train.validation import degenerate_reason, validate, validate_epoch

__all__ = [
    "TrainResult",
    "EpochStats",
    "NonFiniteLoss",
    "build_card",
    "build_optimizer",
    "strided_labels",
    "train_one_epoch",
    "validate",
    "degenerate_reason",
    "fit",
]

# read by code written against the single-module loop (tests, benchmarks)
_COMPAT = (_rng_state, _set_rng_state)

EpochCallback = Callable[[int, dict[str, Any]], None]


class NonFiniteLoss(AtrousError):
    """The training loss became NaN or infinite: the run stopped before that update."""

    exit_code = 1


@dataclass
class EpochStats:
    """What one epoch of training did."""

    loss: float
    lr: float
    images: int
    seconds: float

    @property
    def images_per_second(self) -> float:
        """Training throughput of the epoch."""
        return self.images / max(self.seconds, 1e-9)


@dataclass
class TrainResult:
    """Outcome of ``train``: checkpoints written, best/final val mIoU, per-epoch history and
    the trained model (its final weights, as in ``last.pt``).

    ``degenerate`` is True when the best validation predicted a single class or scored no
    better than predicting background everywhere. Under DDP only rank 0 (``rank``) writes, so
    the other ranks' results name no checkpoint (their scores are rank 0's).
    """

    out_dir: Path
    best_checkpoint: Path | None
    last_checkpoint: Path | None
    best_miou: float
    best_epoch: int
    epochs_run: int
    history: list[dict[str, Any]] = field(default_factory=list)
    interrupted: bool = False
    seconds: float = 0.0
    model: nn.Module | None = field(default=None, repr=False)
    degenerate: bool = False
    rank: int = 0
    fast_graph: Path | None = None  # the verified-by-card fast graph beside best.pt, if written

    @property
    def final_miou(self) -> float | None:
        """Val mIoU after the last validated epoch."""
        values = [h["val_miou"] for h in self.history if h.get("val_miou") is not None]
        return values[-1] if values else None


def _set_train_mode(model: nn.Module, freeze_backbone: bool) -> None:
    model.train()
    if freeze_backbone:
        unwrap(model).backbone.eval()  # frozen BN statistics too


def strided_labels(target: torch.Tensor, stride: int) -> torch.Tensor:
    """Every ``stride``-th label each way, starting at ``stride // 2``: for an odd stride that
    divides the crop, the pixels at whose centres logits upsampled to 1/stride are sampled.
    """
    h, w = target.shape[-2] // stride, target.shape[-1] // stride
    offset = stride // 2
    return target[..., offset::stride, offset::stride][..., :h, :w]


def train_one_epoch(
    model: nn.Module,
    loader: DataLoader,
    criterion: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    *,
    grad_clip: float | None = None,
    freeze_backbone: bool = False,
    on_step: Callable[[float, float, int], None] | None = None,
    channels_last: bool = False,
    loss_stride: int = 1,
    stop: Callable[[], bool] | None = None,
    all_finite: Callable[[bool], bool] | None = None,
    placement: Placement | None = None,
    scaler: torch.amp.GradScaler | None = None,
) -> EpochStats:
    """One pass over ``loader``; the scheduler steps every iteration.

    ``on_step(loss, lr, images)`` is called after each step (progress bars, TensorBoard).
    ``channels_last`` feeds NHWC batches (the model should already be in that memory format).
    ``loss_stride`` s > 1 (odd) scores the loss on every s-th pixel each way, exactly.
    ``stop()`` is asked before each step after the first; True ends the epoch early (a time
    budget ran out). A non-finite loss raises :class:`NonFiniteLoss` before its backward pass
    and update; ``all_finite(ok)`` makes the processes of a DDP job agree on that verdict.
    ``placement`` is the device batches move to and the autocast of the forward pass (default:
    CPU, float32); the loss is computed in float32 and ``scaler`` (fp16) scales its backward.
    """
    _set_train_mode(model, freeze_backbone)
    placement = placement or Placement()
    scaler = scaler or placement.grad_scaler()
    total_loss, images, start = 0.0, 0, time.perf_counter()
    for step, (batch, target) in enumerate(loader):
        if stop is not None and images and stop():  # at least one step per epoch
            break
        batch, target = to_device(batch, target, placement, channels_last)
        size = None
        if loss_stride > 1:
            target = strided_labels(target, loss_stride)
            size = target.shape[-2:]
        with placement.autocast():
            output = model(batch, output_size=size) if size is not None else model(batch)
        loss = criterion(float_logits(output), target)
        value = float(loss.detach())
        lr = optimizer.param_groups[0]["lr"]
        finite = math.isfinite(value)
        if not (finite if all_finite is None else all_finite(finite)):
            raise NonFiniteLoss(
                f"train loss {value:g} at step {step + 1} (lr {lr:.2e}): stopped before that "
                "update; try a lower train.lr or train.grad_clip"
            )
        optimizer_step(loss, model, optimizer, scaler, grad_clip)
        scheduler.step()
        total_loss += value * len(batch)
        images += len(batch)
        if on_step is not None:
            on_step(value, lr, len(batch))
    return EpochStats(
        loss=total_loss / max(images, 1),
        lr=optimizer.param_groups[0]["lr"],
        images=images,
        seconds=time.perf_counter() - start,
    )


def _weights_finite(net: nn.Module) -> bool:
    """True when every floating-point parameter and buffer is finite (fit to save)."""
    return all(
        bool(torch.isfinite(t).all()) for t in net.state_dict().values() if t.is_floating_point()
    )


def _switch_output_stride(run: Run, epoch: int, planned: int) -> bool:
    """Move the model (and its card) to ``train.finetune_output_stride`` once ``epoch`` is one
    of the last ``train.finetune_epochs`` planned; True when it switched now."""
    cfg, net = run.config.train, run.net
    target = cfg.finetune_output_stride
    if target is None or net.config.output_stride == target:
        return False
    if epoch < planned - cfg.finetune_epochs:
        return False
    set_output_stride(net, target)
    run.card.model = net.config
    return True


def _train_epoch(
    run: Run,
    epoch: int,
    planned: int,
    bar: Progress,
    log: MetricsLog | None,
    budget: TimeBudget | None,
) -> tuple[EpochStats, TaskID]:
    """Train epoch ``epoch`` (0-based) of ``planned``; a non-finite loss names the epoch."""
    cfg, dist = run.config.train, run.dist
    run.train_data.set_epoch(epoch)
    if isinstance(run.loader.sampler, DistributedSampler):
        run.loader.sampler.set_epoch(epoch)
    lr = run.optimizer.param_groups[0]["lr"]
    task = bar.add_task(
        f"epoch {epoch + 1}/{planned}", total=len(run.loader), loss=0.0, lr=lr, ips=0.0
    )
    try:
        stats = train_one_epoch(
            run.model,
            run.loader,
            run.criterion,
            run.optimizer,
            run.scheduler,
            grad_clip=cfg.grad_clip,
            freeze_backbone=cfg.freeze_backbone,
            on_step=StepReporter(run, bar, task, log),
            channels_last=cfg.channels_last,
            loss_stride=cfg.loss_stride,
            stop=budget.expired if budget is not None else None,
            all_finite=(lambda ok: all_ranks(ok, dist)) if dist.enabled else None,
            placement=run.placement,
            scaler=run.scaler,
        )
    except NonFiniteLoss as exc:
        raise NonFiniteLoss(f"epoch {epoch + 1}: {exc}; {_kept(run, epoch)}") from None
    average_buffers(run.net, dist)
    if not _weights_finite(run.net):
        raise NonFiniteLoss(
            f"epoch {epoch + 1}: the weights became non-finite; {_kept(run, epoch)}"
        )
    return stats, task


def _kept(run: Run, epoch: int) -> str:
    """What the output folder still holds after a stop in ``epoch`` (0-based): the last good
    weights, if any epoch finished."""
    if epoch > 0 and run.last_path.exists():
        return f"{run.last_path} keeps the weights after epoch {epoch}"
    return "no checkpoint was written"


def _epoch_row(run: Run, epoch: int, stats: EpochStats, start: float) -> dict[str, Any]:
    """The history row of a trained epoch (validation adds to it)."""
    row: dict[str, Any] = {
        "epoch": epoch + 1,
        "train_loss": round(stats.loss, 6),
        "lr": stats.lr,
        "images_per_second": round(stats.images_per_second * run.dist.world_size, 2),
        "epoch_seconds": round(stats.seconds, 2),
        "elapsed_seconds": round(time.perf_counter() - start, 2),
    }
    if run.config.train.finetune_output_stride is not None:
        row["output_stride"] = run.net.config.output_stride
    return row


def _end_epoch(
    run: Run, epoch: int, planned: int, row: dict[str, Any], log: MetricsLog | None
) -> str | None:
    """Validate if due, then (rank 0) record ``row``, save last.pt and write the metrics;
    returns the line to print (None on other ranks)."""
    validating = run.val_data is not None and (
        (epoch + 1) % run.config.train.val_every == 0 or epoch + 1 == planned
    )
    if not run.dist.is_main:
        return None
    if validating:
        validate_epoch(run, epoch, row)
    run.history.append(row)
    save_checkpoint(run.last_path, run.net, run.card, train_state=train_state(run, epoch + 1))
    if log is not None:
        log.epoch(run.history)
    val = f"  val mIoU {row['val_miou']:.4f}" if "val_miou" in row else ""
    ips = row["images_per_second"]
    return f"epoch {epoch + 1}: loss {row['train_loss']:.4f}  {ips:.1f} img/s{val}"


def _save_interrupted(run: Run, epoch: int) -> str:
    """Ctrl-C: save ``interrupted.pt`` (rank 0) unless the weights are unusable; the line to
    print."""
    path = run.out_dir / "interrupted.pt"
    if not _weights_finite(run.net):
        return f"interrupted in epoch {epoch + 1} with non-finite weights: nothing saved"
    save_checkpoint(path, run.net, run.card, train_state=train_state(run, epoch))
    return (
        f"interrupted in epoch {epoch + 1}: saved {path}; --resume continues from {run.last_path}"
    )


def _result(run: Run, epochs_run: int, interrupted: bool, seconds: float) -> TrainResult:
    """The TrainResult of ``fit``; every rank reports rank 0's scores, and only rank 0 names
    the checkpoints it wrote."""
    main = run.dist.is_main
    best_row = next((h for h in run.history if h["epoch"] == run.best_epoch), {})
    degenerate = float(bool(best_row.get("val_degenerate")))
    best, epoch = run.best_miou, float(run.best_epoch)
    if not interrupted:  # every rank reaches this point together
        best, epoch, degenerate = broadcast_floats([best, epoch, degenerate], run.dist)
    return TrainResult(
        out_dir=run.out_dir,
        best_checkpoint=run.best_path if main and run.best_path.exists() else None,
        last_checkpoint=run.last_path if main and run.last_path.exists() else None,
        best_miou=best,
        best_epoch=int(epoch),
        epochs_run=epochs_run,
        history=list(run.history),
        interrupted=interrupted,
        seconds=seconds,
        model=run.net,
        degenerate=bool(degenerate),
        rank=run.dist.rank,
    )


def fit(
    run: Run,
    *,
    console: Console | None = None,
    progress: bool = True,
    on_epoch_end: EpochCallback | None = None,
) -> TrainResult:
    """Run the remaining epochs of ``run``; checkpoint, validate, log. Ctrl-C saves and returns;
    a non-finite loss raises :class:`NonFiniteLoss` with the last good checkpoint kept."""
    cfg, main = run.config.train, run.dist.is_main
    say = console.print if (console is not None and main) else (lambda *a, **k: None)
    log = MetricsLog(run.out_dir, cfg.tensorboard) if main else None
    budget = None
    if cfg.max_minutes is not None:
        budget = TimeBudget(
            cfg.max_minutes, cfg.epochs, run.scheduler, run.iters_per_epoch, run.dist
        )
    start, interrupted, epoch = time.perf_counter(), False, run.start_epoch
    planned = run.planned_epochs()
    try:
        with progress_bar(console, progress and main) as bar:
            while epoch < planned:
                epoch_start = time.perf_counter()
                if _switch_output_stride(run, epoch, planned):
                    say(
                        f"epoch {epoch + 1}: output stride {cfg.finetune_output_stride} from here "
                        "on (fine-tuning)"
                    )
                stats, task = _train_epoch(run, epoch, planned, bar, log, budget)
                row = _epoch_row(run, epoch, stats, start)
                if budget is not None:
                    planned, message = budget.after_epoch(epoch + 1, planned, epoch_start)
                    if message:
                        say(message)
                    row["planned_epochs"] = planned
                line = _end_epoch(run, epoch, planned, row, log)
                if line is not None and console is not None:
                    bar.console.print(line, highlight=False)
                bar.remove_task(task)
                barrier(run.dist)
                if on_epoch_end is not None:
                    on_epoch_end(epoch + 1, row)
                if budget is not None:
                    budget.record(time.perf_counter() - epoch_start)
                epoch += 1
    except KeyboardInterrupt:
        interrupted = True
        if main:
            say(_save_interrupted(run, epoch))
    finally:
        if log is not None:
            log.close()
    result = _result(run, epoch, interrupted, time.perf_counter() - start)
    if result.degenerate and not interrupted:
        say(
            f"warning: the best validation (epoch {result.best_epoch}, mIoU "
            f"{result.best_miou:.4f}) is degenerate: a single class predicted, or no better than "
            "all-background; train longer (train.epochs, train.max_minutes)"
        )
    return result
