"""A training experiment's sections: model (a zoo name and overrides), data, train."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from atrous.config._base import StrictModel, apply_overrides, load_yaml, parse_config
from atrous.config.model import check_override


class DataConfig(StrictModel):
    """Which dataset to read and how to augment it for training.

    ``kind`` picks the layout (see ``atrous.data``); ``root`` is its folder (unused for
    'synthetic'). Training crops are ``crop_size`` squares after random scaling in
    ``scale_range``; the synthetic fields set the generated set's size and difficulty.
    """

    kind: Literal["voc", "cityscapes", "folder", "synthetic"]
    root: str | None = None
    train_split: str = "train"
    val_split: str = "val"
    crop_size: int = 513
    scale_range: tuple[float, float] = (0.5, 2.0)
    flip: bool = True
    # quarter turns too (with flip: all 8 symmetries); only for data with no natural "up"
    rotate90: bool = False
    color_jitter: float = 0.2
    workers: int = 0
    # synthetic only
    train_size: int = 1000
    val_size: int = 100
    image_size: int = 128
    max_shapes: int = 4
    noise: float = 8.0
    object_scale: tuple[float, float] = (0.16, 0.3)
    seed: int = 0

    @model_validator(mode="after")
    def _check(self) -> DataConfig:
        if self.kind != "synthetic" and not self.root:
            raise ValueError(f"data kind '{self.kind}' needs a root folder")
        if self.crop_size < 8:
            raise ValueError(f"crop_size must be at least 8, got {self.crop_size}")
        lo, hi = self.scale_range
        if not 0 < lo <= hi:
            raise ValueError(f"scale_range must be 0 < low <= high, got {self.scale_range}")
        return self


class TrainConfig(StrictModel):
    """Optimisation: epochs, batch, optimizer and LR schedule, loss options, checkpointing."""

    epochs: int = 30
    batch_size: int = 8
    optimizer: Literal["sgd", "adamw"] = "sgd"
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 1e-4
    poly_power: float = 0.9
    warmup_iters: int = 0
    class_weights: list[float] | None = None
    ohem_thresh: float | None = None
    ohem_min_kept: int = 100_000
    aux_weight: float = 0.4
    # weight of a Lovasz-softmax term (a surrogate of 1 - IoU) added to the cross-entropy
    lovasz_weight: float = 0.0
    freeze_backbone: bool = False
    grad_clip: float | None = None
    backbone_weights: str | None = None
    seed: int = 0
    threads: int | None = None
    val_every: int = 1
    val_limit: int | None = None
    tensorboard: bool = True
    # score the loss on every loss_stride-th pixel each way, with logits upsampled straight to
    # those pixels (exactly the full-size logits there); the full-size upsample, softmax and their
    # backward take ~12% of a MobileNet step on 192 px crops (the demo keeps 1: two demo runs
    # scored lower with it). Odd (an even stride would sample between pixels, half a pixel off
    # every label) and dividing data.crop_size.
    loss_stride: int = 1
    # NHWC activations: oneDNN's CPU convolutions (and their backward) run ~1.3x faster
    channels_last: bool = True
    # from scratch: every residual block starts as the identity (shorter initial plateau)
    zero_init_residual: bool = False
    # DeepLabV3's recipe: the last finetune_epochs epochs of the schedule (the low-LR end) run at
    # this output stride, e.g. 8 after training at 16; the checkpoints then carry it
    finetune_output_stride: Literal[8, 16, 32] | None = None
    finetune_epochs: int = Field(1, ge=1)
    # wall-clock budget: after each epoch the run (and its LR schedule) is re-planned to fit;
    # a hard limit too: an epoch still running when it is spent ends early and is the last
    max_minutes: float | None = None
    # local data-parallel processes (DDP: gloo on CPUs, NCCL on GPUs) started by `train` itself;
    # under torchrun the launcher's process count applies instead. batch_size is per process.
    processes: int = 1
    # auto takes a CUDA GPU, then Apple MPS, else the CPU; cuda is each rank's own GPU (LOCAL_RANK);
    # on an accelerator data.workers, unless set, becomes one loader worker per core (at most 8)
    device: str = "auto"
    # mixed precision (autocast; weights, checkpoints and the loss stay float32): bf16 also on
    # CPUs (fast with AVX-512-BF16/AMX), fp16 on GPUs only (with a GradScaler)
    amp: Literal["off", "bf16", "fp16"] = "off"
    # the fast graph written beside best.pt when training ends (what predict, evaluate, serve
    # and benchmark then run): int8 calibrated on training images, fp32, or none
    fast_graph: Literal["int8", "fp32", "none"] = "int8"

    @field_validator("amp", mode="before")
    @classmethod
    def _amp_off(cls, value: Any) -> Any:
        """YAML reads a bare ``off`` as False."""
        return "off" if value is False else value

    @field_validator("device")
    @classmethod
    def _device_name(cls, value: str) -> str:
        if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", value):
            raise ValueError(f"must be auto, cpu, cuda, cuda:N or mps, got {value!r}")
        return value

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("epochs and batch_size must be at least 1")
        if self.lr <= 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if self.processes < 1:
            raise ValueError(f"processes must be at least 1, got {self.processes}")
        if self.loss_stride < 1 or self.loss_stride % 2 == 0:
            raise ValueError(
                f"loss_stride must be odd (1, 3, 5 ...): an even one samples logits between "
                f"pixels, half a pixel off every label; got {self.loss_stride}"
            )
        if self.max_minutes is not None and self.max_minutes <= 0:
            raise ValueError(f"max_minutes must be positive, got {self.max_minutes}")
        if self.ohem_thresh is not None and not 0 < self.ohem_thresh < 1:
            raise ValueError(f"ohem_thresh is a probability in (0, 1), got {self.ohem_thresh}")
        if self.amp == "fp16" and self.device == "cpu":
            raise ValueError("amp fp16 needs a GPU (cuda, mps); on device cpu use amp bf16")
        return self


class ModelSection(StrictModel):
    """A zoo model by name plus overrides of its ModelConfig fields and its input size.

    ``num_classes`` is taken from the dataset unless overridden; ``input_size`` becomes the
    model card's preprocessing size (the size images are resized to at inference).
    """

    name: str
    overrides: dict[str, Any] = {}
    input_size: int | None = None

    @model_validator(mode="after")
    def _check(self) -> ModelSection:
        # each override on its own; the name and the merged config are checked against the zoo
        # where the experiment is resolved (atrous.models.zoo.resolve_experiment)
        for key, value in self.overrides.items():
            check_override(str(key), value)
        return self


class ExperimentConfig(StrictModel):
    """One training experiment: model, data, train sections and an output folder."""

    model: ModelSection
    data: DataConfig
    train: TrainConfig = TrainConfig()
    out_dir: str = "runs/experiment"

    @property
    def input_size(self) -> int:
        """The size the trained model's card resizes images to: ``model.input_size``, else
        the training crop size."""
        return self.model.input_size or self.data.crop_size

    @model_validator(mode="after")
    def _check(self) -> ExperimentConfig:
        stride = self.train.loss_stride
        if self.data.crop_size % stride:
            raise ValueError(
                f"train.loss_stride {stride} must divide data.crop_size {self.data.crop_size}"
            )
        return self


def load_experiment(path: str | Path, overrides: list[str] | None = None) -> ExperimentConfig:
    """Read an experiment YAML, apply ``key=value`` overrides, validate (one-line errors)."""
    data = apply_overrides(load_yaml(path), list(overrides or []))
    return parse_config(ExperimentConfig, data, str(path))
