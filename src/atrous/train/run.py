"""A training run: everything ``fit`` needs, and how it is built from an ExperimentConfig.

:func:`build_run` makes the model card, datasets, loader, optimizer, poly schedule and loss of
an experiment, on the device and in the precision ``train.device`` / ``train.amp`` name;
:class:`Run` carries them, plus the state a resume restores (epoch, best mIoU, history).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler

from atrous.card import ModelCard
from atrous.config import ExperimentConfig, TrainConfig
from atrous.data import SegmentationDataset, build_dataset
from atrous.data.transforms import Normalize, TransformedDataset, train_transform
from atrous.errors import ConfigError, ModelError
from atrous.models.backbones import zero_init_residuals
from atrous.models.deeplab import DeepLab
from atrous.models.zoo import default_card
from atrous.runtimes import default_threads
from atrous.train.device import Placement, loader_settings, resolve_placement
from atrous.train.distributed import DistInfo, local_rank, unwrap
from atrous.train.losses import SegmentationLoss
from atrous.train.pretrained import load_backbone_weights
from atrous.train.schedules import PolyScheduler

__all__ = ["Run", "build_run", "build_card", "build_optimizer", "seed_everything"]


@dataclass
class Run:
    """Everything ``fit`` needs: the parts built from the config, and the progress so far."""

    config: ExperimentConfig
    out_dir: Path
    card: ModelCard
    model: nn.Module
    criterion: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: PolyScheduler
    loader: DataLoader
    train_data: TransformedDataset
    val_data: SegmentationDataset | None
    dist: DistInfo
    threads: int
    start_epoch: int = 0
    best_miou: float = -1.0
    best_epoch: int = -1
    history: list[dict[str, Any]] = field(default_factory=list)
    placement: Placement = field(default_factory=Placement)
    scaler: torch.amp.GradScaler = field(
        default_factory=lambda: torch.amp.GradScaler("cpu", enabled=False)
    )

    @property
    def net(self) -> DeepLab:
        """The model itself (unwrapped from DistributedDataParallel)."""
        return unwrap(self.model)  # type: ignore[return-value]

    @property
    def last_path(self) -> Path:
        """The checkpoint written after every epoch (what ``--resume`` reads)."""
        return self.out_dir / "last.pt"

    @property
    def best_path(self) -> Path:
        """The checkpoint of the best validated epoch."""
        return self.out_dir / "best.pt"

    @property
    def iters_per_epoch(self) -> int:
        """Optimizer steps per epoch (per rank)."""
        return max(1, len(self.loader))

    def planned_epochs(self) -> int:
        """Epochs the schedule runs to: the config's, or fewer if a time budget shortened it."""
        horizon = round(self.scheduler.total_iters / self.iters_per_epoch)
        return min(self.config.train.epochs, max(1, horizon))


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
    pre = card.preprocessing.model_copy(update={"size": config.input_size})
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


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch: a run is reproducible from its config."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _make_loader(
    data: TransformedDataset,
    batch_size: int,
    workers: tuple[int, bool],
    dist: DistInfo,
    seed: int,
) -> DataLoader:
    """Shuffled full batches, each rank its own share (one rank: all of it); ``workers`` is
    ``(num_workers, pin_memory)``."""
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
        num_workers=workers[0],
        persistent_workers=workers[0] > 0,
        pin_memory=workers[1],
    )


def _build_model(
    config: ExperimentConfig, card: ModelCard, resume: bool, device: torch.device
) -> tuple[DeepLab, str]:
    """The DeepLab of ``card`` on ``device``, initialised as the config says; also a line on
    backbone weights."""
    cfg = config.train
    model = DeepLab(card.model)
    if cfg.zero_init_residual and not cfg.backbone_weights:
        zero_init_residuals(model.backbone)
    report = ""
    if cfg.backbone_weights and not resume:
        report = load_backbone_weights(model, cfg.backbone_weights).summary()
    model = model.to(device)  # float32 weights whatever train.amp: autocast casts per op
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if cfg.freeze_backbone:
        for p in model.backbone.parameters():
            p.requires_grad_(False)
    return model, report


def _build_criterion(cfg: TrainConfig, dataset: SegmentationDataset) -> SegmentationLoss:
    """The loss of ``train``: cross-entropy (+ OHEM, aux, Lovasz) over the dataset's classes."""
    if cfg.class_weights and len(cfg.class_weights) != len(dataset.classes):
        raise ConfigError(
            f"train.class_weights: {len(cfg.class_weights)} weights for "
            f"{len(dataset.classes)} classes"
        )
    return SegmentationLoss(
        ignore_index=dataset.ignore_index,
        class_weights=cfg.class_weights,
        ohem_thresh=cfg.ohem_thresh,
        ohem_min_kept=cfg.ohem_min_kept,
        aux_weight=cfg.aux_weight,
        lovasz_weight=cfg.lovasz_weight,
    )


def build_run(
    config: ExperimentConfig,
    out_dir: Path,
    dist: DistInfo,
    *,
    resume: bool = False,
    placement: Placement | None = None,
) -> tuple[Run, str]:
    """Everything an experiment trains with, fresh (a resume then restores its state), on
    ``placement`` (default: resolved from ``train.device`` / ``train.amp``); also the
    backbone-weights report ('' if none were loaded). Sets torch's thread count and seeds."""
    cfg, data_cfg = config.train, config.data
    placement = placement or resolve_placement(cfg.device, cfg.amp, local_rank())
    cores = max(1, default_threads() // dist.world_size)  # this process's share
    threads = cfg.threads or cores
    torch.set_num_threads(threads)
    seed_everything(cfg.seed)
    train_set = build_dataset(data_cfg, "train")
    val_set = build_dataset(data_cfg, "val") if dist.is_main else None
    card = build_card(config, train_set)
    model, report = _build_model(config, card, resume, placement.device)
    transform = train_transform(
        data_cfg.crop_size,
        data_cfg.scale_range,
        data_cfg.flip,
        data_cfg.color_jitter,
        train_set.ignore_index,
        data_cfg.rotate90,
    )
    data = TransformedDataset(train_set, transform, Normalize(card.preprocessing), seed=cfg.seed)
    workers = loader_settings(
        placement,
        data_cfg.workers,
        "workers" in data_cfg.model_fields_set,
        cores,
    )
    loader = _make_loader(data, cfg.batch_size, workers, dist, cfg.seed)
    optimizer = build_optimizer(model, cfg)
    scheduler = PolyScheduler(optimizer, cfg.epochs * len(loader), cfg.poly_power, cfg.warmup_iters)
    criterion = _build_criterion(cfg, train_set).to(placement.device)
    run = Run(
        config, out_dir, card, model, criterion, optimizer, scheduler, loader, data, val_set, dist,
        threads, placement=placement, scaler=placement.grad_scaler(),
    )  # fmt: skip
    return run, report
