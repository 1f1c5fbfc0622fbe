"""The training loop as library functions: ``train_one_epoch``, ``fit`` and ``train``.

``train`` builds everything from an ExperimentConfig (model card, datasets, loaders, optimizer,
schedule), resumes if asked, and runs ``fit``: epochs of ``train_one_epoch``, validation through
the one evaluator, atomic checkpoints (each epoch and best), metrics as CSV/JSON/TensorBoard.
Ctrl-C saves ``interrupted.pt`` and returns; ``--resume`` continues from ``last.pt`` exactly.
"""

from __future__ import annotations

import csv
import io
import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler

from atrous._atomic import atomic_write_text, remove_stale_temporaries
from atrous.card import ModelCard
from atrous.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from atrous.config import ExperimentConfig, TrainConfig
from atrous.data import SegmentationDataset, build_dataset
from atrous.data.transforms import Normalize, TransformedDataset, train_transform
from atrous.errors import ConfigError, ModelError
from atrous.evaluate import EvalResult, evaluate
from atrous.models.backbones import zero_init_residuals
from atrous.models.deeplab import DeepLab, set_output_stride
from atrous.models.zoo import default_card
from atrous.runtimes import TorchEngine, default_threads
from atrous.segmenter import Segmenter
from atrous.train.distributed import (
    DistInfo,
    average_buffers,
    barrier,
    broadcast_int,
    init_distributed,
    launched,
    shutdown_distributed,
    spawn_local,
)
from atrous.train.losses import SegmentationLoss
from atrous.train.pretrained import load_backbone_weights
from atrous.train.schedules import poly_scheduler

__all__ = [
    "TrainResult",
    "EpochStats",
    "build_card",
    "build_optimizer",
    "strided_labels",
    "train_one_epoch",
    "validate",
    "fit",
    "train",
]

EpochCallback = Callable[[int, dict[str, Any]], None]


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
    the trained model (its final weights, as in ``last.pt``)."""

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

    @property
    def final_miou(self) -> float | None:
        """Val mIoU after the last validated epoch."""
        values = [h["val_miou"] for h in self.history if h.get("val_miou") is not None]
        return values[-1] if values else None


def build_card(config: ExperimentConfig, dataset: SegmentationDataset) -> ModelCard:
    """The model card of a run: zoo entry + overrides, the dataset's classes and palette."""
    overrides = {"num_classes": len(dataset.classes), **config.model.overrides}
    try:
        card = default_card(config.model.name, **overrides)
    except ModelError as exc:
        raise ConfigError(f"model.name: {exc}") from None
    except ValueError as exc:  # pydantic error on an override
        first = exc.errors()[0] if hasattr(exc, "errors") else {"loc": (), "msg": str(exc)}
        key = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"model.overrides.{key}: {first['msg']}") from None
    size = config.model.input_size or config.data.crop_size
    pre = card.preprocessing.model_copy(update={"size": size})
    provenance = card.provenance.model_copy(
        update={"dataset": dataset.name, "notes": {"config": config.model_dump(mode="json")}}
    )
    return card.model_copy(
        update={
            "classes": list(dataset.classes),
            "palette": [tuple(c) for c in dataset.palette[: len(dataset.classes)]],
            "ignore_index": dataset.ignore_index,
            "preprocessing": pre,
            "provenance": provenance,
        }
    )


def build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """SGD with momentum or AdamW over trainable parameters; no weight decay on norms/biases."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    groups = [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    # fused kernels update every parameter in one pass (~10% of a CPU step for MobileNets)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=config.lr, fused=True)
    return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, fused=True)


def _unwrap(model: nn.Module) -> DeepLab:
    return model.module if isinstance(model, DistributedDataParallel) else model


def _set_train_mode(model: nn.Module, freeze_backbone: bool) -> None:
    model.train()
    if freeze_backbone:
        _unwrap(model).backbone.eval()  # frozen BN statistics too


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
) -> EpochStats:
    """One pass over ``loader``; the scheduler steps every iteration.

    ``on_step(loss, lr, images)`` is called after each step (progress bars, TensorBoard).
    ``channels_last`` feeds NHWC batches (the model should already be in that memory format).
    ``loss_stride`` s > 1 (odd) scores the loss on every s-th pixel each way, exactly.
    ``stop()`` is asked before each step after the first; True ends the epoch early (a time
    budget ran out).
    """
    _set_train_mode(model, freeze_backbone)
    total_loss, images, start = 0.0, 0, time.perf_counter()
    for batch, target in loader:
        if stop is not None and images and stop():  # at least one step per epoch
            break
        if channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        if loss_stride > 1:
            target = strided_labels(target, loss_stride)
            output = model(batch, output_size=target.shape[-2:])
        else:
            output = model(batch)
        loss = criterion(output, target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
        lr = optimizer.param_groups[0]["lr"]
        scheduler.step()
        value = float(loss.detach())
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


def validate(
    model: nn.Module,
    card: ModelCard,
    dataset: SegmentationDataset,
    *,
    limit: int | None = None,
    threads: int | None = None,
) -> EvalResult:
    """Evaluate the model as it stands, through Segmenter + the one evaluator."""
    net = _unwrap(model)
    was_training = net.training
    try:
        engine = TorchEngine(net, threads=threads)
        return evaluate(Segmenter(engine, card), dataset, limit=limit, progress=False)
    finally:
        net.train(was_training)


# -- run state and files ------------------------------------------------------------------------
def _rng_state() -> dict[str, Any]:
    """RNG states as tensors and plain values, so checkpoints load with ``weights_only=True``."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "numpy": (name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached),
        "python": random.getstate(),
    }


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    keys = keys.numpy() if isinstance(keys, torch.Tensor) else np.asarray(keys)
    np.random.set_state((name, keys.astype(np.uint32), pos, has_gauss, cached))
    random.setstate(state["python"])


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class _MetricsLog:
    """metrics.csv + metrics.json (whole history, rewritten atomically) and TensorBoard."""

    def __init__(self, out_dir: Path, tensorboard: bool) -> None:
        self.out_dir = out_dir
        self.writer = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(out_dir / "tensorboard"))

    def step(self, name: str, value: float, step: int) -> None:
        if self.writer is not None:
            self.writer.add_scalar(name, value, step)

    def epoch(self, history: list[dict[str, Any]]) -> None:
        row = history[-1]
        for key, value in row.items():
            if key != "epoch" and isinstance(value, int | float):
                self.step(f"epoch/{key}", value, row["epoch"])
        keys = list(dict.fromkeys(k for h in history for k in h))
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=keys)
        writer.writeheader()
        writer.writerows(history)
        atomic_write_text(self.out_dir / "metrics.csv", text.getvalue())
        atomic_write_text(self.out_dir / "metrics.json", json.dumps(history, indent=2))
        if self.writer is not None:
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _progress(console: Console | None, enabled: bool) -> Progress:
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.4f}  lr {task.fields[lr]:.2e}"),
        TextColumn("{task.fields[ips]:.1f} img/s"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    return Progress(*columns, console=console, disable=not enabled, transient=False)


@dataclass
class _Run:
    """Everything ``fit`` needs, built by ``train``."""

    config: ExperimentConfig
    out_dir: Path
    card: ModelCard
    model: nn.Module
    criterion: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    loader: DataLoader
    train_data: TransformedDataset
    val_data: SegmentationDataset | None
    dist: DistInfo
    threads: int
    start_epoch: int = 0
    best_miou: float = -1.0
    best_epoch: int = -1
    history: list[dict[str, Any]] = field(default_factory=list)


def _train_state(run: _Run, epoch: int) -> dict[str, Any]:
    return {
        "epoch": epoch,
        "optimizer": run.optimizer.state_dict(),
        "scheduler": run.scheduler.state_dict(),
        "rng": _rng_state(),
        "best_miou": run.best_miou,
        "best_epoch": run.best_epoch,
        "history": run.history,
        "config": run.config.model_dump(mode="json"),
    }


def fit(
    run: _Run,
    *,
    console: Console | None = None,
    progress: bool = True,
    on_epoch_end: EpochCallback | None = None,
) -> TrainResult:
    """Run the remaining epochs of ``run``; checkpoint, validate, log. Ctrl-C saves and returns."""
    cfg, main = run.config.train, run.dist.is_main
    say = console.print if (console is not None and main) else (lambda *a, **k: None)
    log = _MetricsLog(run.out_dir, cfg.tensorboard) if main else None
    net = _unwrap(run.model)
    last, best = run.out_dir / "last.pt", run.out_dir / "best.pt"
    start, interrupted, epoch = time.perf_counter(), False, run.start_epoch
    global_step = run.start_epoch * len(run.loader)
    world = run.dist.world_size
    planned = _planned_epochs(run)
    durations: list[float] = []  # wall seconds of each finished epoch (train, validate, save)
    out_of_time = None
    if cfg.max_minutes is not None:
        deadline = start + 60.0 * cfg.max_minutes

        def out_of_time() -> bool:
            """Past the budget (the ranks agree: rank 0's clock decides)."""
            return bool(broadcast_int(int(time.perf_counter() > deadline), run.dist))

    try:
        with _progress(console, progress and main) as bar:
            while epoch < planned:
                if _switch_output_stride(run, epoch, planned):
                    say(
                        f"epoch {epoch + 1}: output stride {cfg.finetune_output_stride} from here "
                        "on (fine-tuning)"
                    )
                run.train_data.set_epoch(epoch)
                if isinstance(run.loader.sampler, DistributedSampler):
                    run.loader.sampler.set_epoch(epoch)
                task = bar.add_task(
                    f"epoch {epoch + 1}/{planned}",
                    total=len(run.loader),
                    loss=0.0,
                    lr=run.optimizer.param_groups[0]["lr"],
                    ips=0.0,
                )
                t0, seen = time.perf_counter(), 0
                epoch_start = t0

                def on_step(loss: float, lr: float, n: int, task=task, t0=t0) -> None:
                    nonlocal seen, global_step
                    seen += n * world
                    global_step += 1
                    ips = seen / max(time.perf_counter() - t0, 1e-9)
                    bar.update(task, advance=1, loss=loss, lr=lr, ips=ips)
                    if log is not None:
                        log.step("train/loss", loss, global_step)
                        log.step("train/lr", lr, global_step)

                stats = train_one_epoch(
                    run.model,
                    run.loader,
                    run.criterion,
                    run.optimizer,
                    run.scheduler,
                    grad_clip=cfg.grad_clip,
                    freeze_backbone=cfg.freeze_backbone,
                    on_step=on_step,
                    channels_last=cfg.channels_last,
                    loss_stride=cfg.loss_stride,
                    stop=out_of_time,
                )
                average_buffers(net, run.dist)
                row: dict[str, Any] = {
                    "epoch": epoch + 1,
                    "train_loss": round(stats.loss, 6),
                    "lr": stats.lr,
                    "images_per_second": round(stats.images_per_second * world, 2),
                    "epoch_seconds": round(stats.seconds, 2),
                    "elapsed_seconds": round(time.perf_counter() - start, 2),
                }
                if cfg.finetune_output_stride is not None:
                    row["output_stride"] = net.config.output_stride
                if out_of_time is not None:
                    if out_of_time():
                        planned = epoch + 1  # the budget ran out inside this epoch: the last
                        budget = f"time budget {cfg.max_minutes:g} min"
                        say(f"{budget} reached: stopping after this epoch")
                    else:
                        now = time.perf_counter()
                        # the first epoch also pays one-off costs (caches, warm-up): once others
                        # are measured, they alone give the pace
                        pace = durations[1:] or durations or [now - epoch_start]
                        per_epoch = sum(pace) / len(pace)
                        fits = _epochs_within_budget(run, epoch + 1, now - start, per_epoch)
                        # every rank must run the same epochs: rank 0 decides
                        fits = broadcast_int(fits, run.dist)
                        if fits != planned:
                            say(
                                f"time budget {cfg.max_minutes:g} min at {per_epoch:.0f} s per "
                                f"epoch: {fits} epochs planned (of {cfg.epochs}); LR schedule "
                                "re-planned to match"
                            )
                        planned = fits
                    _set_planned_epochs(run, planned)
                    row["planned_epochs"] = planned
                validating = run.val_data is not None and (
                    (epoch + 1) % cfg.val_every == 0 or epoch + 1 == planned
                )
                if main and validating:
                    result = validate(
                        net, run.card, run.val_data, limit=cfg.val_limit, threads=run.threads
                    )
                    row.update(
                        val_miou=round(result.miou, 6),
                        val_pixel_accuracy=round(result.pixel_accuracy, 6),
                    )
                    if result.miou > run.best_miou:
                        run.best_miou, run.best_epoch = result.miou, epoch + 1
                        save_checkpoint(best, net, _card_with_metrics(run.card, result, epoch + 1))
                if main:
                    run.history.append(row)
                    save_checkpoint(last, net, run.card, train_state=_train_state(run, epoch + 1))
                    log.epoch(run.history)
                    val = f"  val mIoU {row['val_miou']:.4f}" if "val_miou" in row else ""
                    if console is not None:
                        bar.console.print(
                            f"epoch {epoch + 1}: loss {stats.loss:.4f}  "
                            f"{row['images_per_second']:.1f} img/s{val}",
                            highlight=False,
                        )
                    bar.remove_task(task)
                barrier(run.dist)
                if on_epoch_end is not None:
                    on_epoch_end(epoch + 1, row)
                durations.append(time.perf_counter() - epoch_start)
                epoch += 1
    except KeyboardInterrupt:
        interrupted = True
        if main:
            path = run.out_dir / "interrupted.pt"
            save_checkpoint(path, net, run.card, train_state=_train_state(run, epoch))
            say(f"interrupted in epoch {epoch + 1}: saved {path}; --resume continues from {last}")
    finally:
        if log is not None:
            log.close()
    return TrainResult(
        out_dir=run.out_dir,
        best_checkpoint=best if best.exists() else None,
        last_checkpoint=last if last.exists() else None,
        best_miou=run.best_miou,
        best_epoch=run.best_epoch,
        epochs_run=epoch,
        history=list(run.history),
        interrupted=interrupted,
        seconds=time.perf_counter() - start,
        model=net,
    )


def _switch_output_stride(run: _Run, epoch: int, planned: int) -> bool:
    """Move the model (and its card) to ``train.finetune_output_stride`` once ``epoch`` is one
    of the last ``train.finetune_epochs`` planned; True when it switched now."""
    cfg, net = run.config.train, _unwrap(run.model)
    target = cfg.finetune_output_stride
    if target is None or net.config.output_stride == target:
        return False
    if epoch < planned - cfg.finetune_epochs:
        return False
    set_output_stride(net, target)
    run.card.model = net.config
    return True


def _planned_epochs(run: _Run) -> int:
    """Epochs the schedule runs to: the config's, or fewer if a time budget shortened it."""
    horizon = getattr(run.scheduler.lr_lambdas[0], "total_iters", None)  # type: ignore[attr-defined]
    if horizon is None:
        return run.config.train.epochs
    return min(run.config.train.epochs, max(1, round(horizon / max(1, len(run.loader)))))


def _set_planned_epochs(run: _Run, epochs: int) -> None:
    """Move the poly LR horizon to the end of ``epochs`` (what :func:`_planned_epochs` reads,
    so a resumed run keeps the plan)."""
    run.scheduler.lr_lambdas[0].total_iters = epochs * len(run.loader)  # type: ignore[attr-defined]


def _epochs_within_budget(run: _Run, done: int, elapsed: float, per_epoch: float) -> int:
    """Epochs that fit ``train.max_minutes`` at this run's own pace (``per_epoch`` seconds),
    between the epochs done and ``train.epochs``: the same recipe fits the budget on a slower
    machine instead of overrunning it."""
    cfg = run.config.train
    budget = 60.0 * float(cfg.max_minutes or 0)
    fits = done + int(max(0.0, budget - elapsed) // max(per_epoch, 1e-6))
    return min(cfg.epochs, max(done, fits))


def _card_with_metrics(card: ModelCard, result: EvalResult, epoch: int) -> ModelCard:
    metrics = {
        "miou": round(result.miou, 6),
        "pixel_accuracy": round(result.pixel_accuracy, 6),
        "protocol": result.protocol,
        "dataset": card.provenance.dataset,
        "epoch": epoch,
    }
    return card.model_copy(update={"metrics": {**card.metrics, **metrics}})


def _make_loader(
    data: TransformedDataset, batch_size: int, workers: int, dist: DistInfo, seed: int
) -> DataLoader:
    sampler = DistributedSampler(
        data, num_replicas=dist.world_size, rank=dist.rank, shuffle=True, seed=seed, drop_last=True
    )
    if len(data) // dist.world_size < batch_size:
        raise ConfigError(
            f"train.batch_size {batch_size} is larger than the {len(data)} training samples "
            f"available per process"
        )
    return DataLoader(
        data,
        batch_size=batch_size,
        sampler=sampler,
        drop_last=True,
        num_workers=workers,
        persistent_workers=workers > 0,
    )


def train(
    config: ExperimentConfig,
    out_dir: str | Path | None = None,
    resume: bool = False,
    *,
    console: Console | None = None,
    progress: bool = True,
    on_epoch_end: EpochCallback | None = None,
) -> TrainResult:
    """Train the experiment ``config`` into ``out_dir`` (default: config.out_dir).

    With ``resume``, model, optimizer, scheduler, RNG state, history and epoch come from
    ``out_dir/last.pt`` and training continues the same schedule. Under torchrun each rank calls
    this; rank 0 alone validates and writes.
    """
    if config.train.processes > 1 and not launched():
        return _train_spawned(config, Path(out_dir or config.out_dir), resume, progress)
    dist = init_distributed()
    try:
        return _train(config, out_dir, resume, dist, console, progress, on_epoch_end)
    finally:
        shutdown_distributed(dist)


def _spawned_worker(config: ExperimentConfig, out_dir: Path, resume: bool, progress: bool) -> None:
    train(config, out_dir, resume=resume, console=Console(), progress=progress)


def _train_spawned(
    config: ExperimentConfig, out_dir: Path, resume: bool, progress: bool
) -> TrainResult:
    """``train.processes`` > 1 without torchrun: start the ranks here (one thread each by
    default), wait, and rebuild the result from what rank 0 wrote."""
    start = time.perf_counter()
    spawn_local(_spawned_worker, config.train.processes, config, out_dir, resume, progress)
    last, best = out_dir / "last.pt", out_dir / "best.pt"
    interrupted = out_dir / "interrupted.pt"
    final = interrupted if interrupted.exists() and not last.exists() else last
    state = read_checkpoint(final).get("train_state") or {}
    model, _ = load_checkpoint(final)
    return TrainResult(
        out_dir=out_dir,
        best_checkpoint=best if best.exists() else None,
        last_checkpoint=last if last.exists() else None,
        best_miou=float(state.get("best_miou", -1.0)),
        best_epoch=int(state.get("best_epoch", -1)),
        epochs_run=int(state.get("epoch", 0)),
        history=list(state.get("history", [])),
        interrupted=interrupted.exists(),
        seconds=time.perf_counter() - start,
        model=model,
    )


def _train(config, out_dir, resume, dist, console, progress, on_epoch_end) -> TrainResult:
    cfg = config.train
    out = Path(out_dir or config.out_dir)
    last = out / "last.pt"
    if resume and not last.is_file():
        raise ConfigError(f"{last}: nothing to resume (no last.pt in the output folder)")
    threads = cfg.threads or max(1, default_threads() // dist.world_size)
    torch.set_num_threads(threads)
    _seed_everything(cfg.seed)
    train_set = build_dataset(config.data, "train")
    val_set = build_dataset(config.data, "val") if dist.is_main else None
    card = build_card(config, train_set)
    model = DeepLab(card.model)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    say = console.print if (console is not None and dist.is_main) else (lambda *a, **k: None)
    if cfg.zero_init_residual and not cfg.backbone_weights:
        zero_init_residuals(model.backbone)
    if cfg.backbone_weights and not resume:
        say(load_backbone_weights(model, cfg.backbone_weights).summary())
    if cfg.freeze_backbone:
        for p in model.backbone.parameters():
            p.requires_grad_(False)
    data = TransformedDataset(
        train_set,
        train_transform(
            config.data.crop_size,
            config.data.scale_range,
            config.data.flip,
            config.data.color_jitter,
            train_set.ignore_index,
            config.data.rotate90,
        ),
        Normalize(card.preprocessing),
        seed=cfg.seed,
    )
    loader = _make_loader(data, cfg.batch_size, config.data.workers, dist, cfg.seed)
    optimizer = build_optimizer(model, cfg)
    scheduler = poly_scheduler(
        optimizer, cfg.epochs * len(loader), cfg.poly_power, cfg.warmup_iters
    )
    criterion = SegmentationLoss(
        ignore_index=train_set.ignore_index,
        class_weights=cfg.class_weights,
        ohem_thresh=cfg.ohem_thresh,
        ohem_min_kept=cfg.ohem_min_kept,
        aux_weight=cfg.aux_weight,
        lovasz_weight=cfg.lovasz_weight,
    )
    if cfg.class_weights and len(cfg.class_weights) != len(train_set.classes):
        raise ConfigError(
            f"train.class_weights: {len(cfg.class_weights)} weights for "
            f"{len(train_set.classes)} classes"
        )
    run = _Run(
        config, out, card, model, criterion, optimizer, scheduler, loader, data, val_set, dist,
        threads,
    )  # fmt: skip
    proceeds = True
    if resume:
        _restore(run, last)
        planned = _planned_epochs(run)
        proceeds = run.start_epoch < planned
        if proceeds:
            say(f"resuming {last} at epoch {run.start_epoch + 1}/{planned}")
        else:
            say(f"{last} has run all {planned} planned epochs: nothing left to train")
    if dist.enabled:
        run.model = DistributedDataParallel(model)
    if dist.is_main:
        out.mkdir(parents=True, exist_ok=True)
        for stale in remove_stale_temporaries(out):
            say(f"removed {stale.name}, left half-written by a killed run")
        if proceeds:  # a finished run keeps the config it was trained with
            atomic_write_text(
                out / "config.yaml",
                yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False),
            )
    barrier(dist)
    return fit(run, console=console, progress=progress, on_epoch_end=on_epoch_end)


def _restore(run: _Run, path: Path) -> None:
    """Load model, optimizer, scheduler, RNG, history and epoch from ``path``."""
    data = read_checkpoint(path)
    state = data.get("train_state")
    if state is None:
        raise ModelError(f"{path}: no training state to resume from")
    _check_same_epochs(run.config.train.epochs, state, path)
    run.model.load_state_dict(data["state_dict"])
    run.optimizer.load_state_dict(state["optimizer"])
    run.scheduler.load_state_dict(state["scheduler"])
    _set_rng_state(state["rng"])
    run.start_epoch = int(state["epoch"])
    run.best_miou = float(state["best_miou"])
    run.best_epoch = int(state["best_epoch"])
    run.history = list(state["history"])


def _check_same_epochs(epochs: int, state: dict[str, Any], path: Path) -> None:
    """Refuse to resume with another ``train.epochs``: the poly LR horizon, already partly decayed,
    belongs to the checkpoint's plan, and silently keeping it would train nothing more."""
    saved = (state.get("config") or {}).get("train", {}).get("epochs")
    if saved is None or saved == epochs:
        return
    raise ConfigError(
        f"{path}: --resume continues the checkpoint's schedule of train.epochs={saved}, not "
        f"train.epochs={epochs}; to train longer, start a new run in another --out folder "
        f"(train.backbone_weights={path} initialises its backbone from this one)"
    )
