"""Typed configuration: pydantic schemas for every section; YAML in, one-line errors out.

Every schema forbids unknown keys, so a typo is reported as ``file: unknown key 'x.y'`` instead of
being silently ignored.
"""

from __future__ import annotations

import math
import re
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PositiveInt,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from atrous.errors import ConfigError
from atrous.registry import backbone_fields, get_backbone, list_backbones

__all__ = [
    "StrictModel",
    "ModelConfig",
    "Preprocessing",
    "load_yaml",
    "parse_config",
    "apply_overrides",
    "format_validation_error",
    "DataConfig",
    "TrainConfig",
    "ModelSection",
    "ExperimentConfig",
    "load_experiment",
]

T = TypeVar("T", bound=BaseModel)

# Configs are a few KB; a bound keeps a hostile file from costing minutes of parsing.
MAX_CONFIG_BYTES = 1 << 20


class StrictModel(BaseModel):
    """Base for every config section: unknown keys are errors, assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())

    @field_validator("*", mode="after")
    @classmethod
    def _finite(cls, value: Any) -> Any:
        """Refuse NaN and infinities in every float field, tuples and lists of floats included:
        a NaN learning rate trains NaN weights, a NaN budget disables the budget."""
        if _non_finite(value):
            raise ValueError(f"must be finite (no NaN or infinity), got {value}")
        return value


def _non_finite(value: Any) -> bool:
    """True for a NaN or infinite float, or a tuple/list holding one (at any depth)."""
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, tuple | list):
        return any(_non_finite(v) for v in value)
    return False


def _known_backbone(name: str) -> str:
    """``name`` if a backbone is registered under it (ValueError listing the known ones)."""
    get_backbone(name)
    return name


class ModelConfig(StrictModel):
    """Architecture of a DeepLab model: everything needed to rebuild it with no other input.

    ``backbone`` is a name in the backbone registry (``atrous.registry.list_backbones()``); the
    backbone-specific fields (``width_mult``, ``multi_grid`` ...) stay at their defaults unless
    the backbone takes them. ``atrous_rates`` left unset means (6, 12, 18) scaled by
    16 / output_stride; an empty list with ``head='aspp'`` is the image-pooling + 1x1 head.
    ``head='pooling'`` is the same thing by name. ``head='lraspp'`` is LR-ASPP (Howard et al.,
    2019; torchvision's ``LRASPPHead``): ``head_channels`` inter channels, the ``aux`` features as
    its low input. ``head_conv`` adds torchvision DeepLabHead's 3x3 conv + BN + ReLU after ASPP;
    ``aux_channels`` sets the aux head's inner width (default max(in / 4, 32); torchvision: in / 4);
    ``aux_stride`` 8 taps MobileNetV3's stride-8 features as ``aux`` (torchvision's C2).
    ``upsampling`` resizes the decoder's input and the logits (``'transposed'``: a learned
    depthwise ConvTranspose2d initialised to bilinear); ``activation`` is the head's, the
    decoder's and the aux head's non-linearity. smp's variants (segmentation_models_pytorch):
    ``uniform_dilation`` dilates every unit of a dilated stage, its first one included (smp's
    ``make_dilated``; default: the first unit keeps the previous dilation, as TF DeepLab and
    torchvision); ``last_channels`` closes MobileNetV2 with its 1x1 conv to that many channels
    (torchvision's 1280); ``depthwise_bn`` False makes a separable conv depthwise -> pointwise
    -> BN -> activation (smp's SeparableConv2d; default: BN + activation after each, TF
    DeepLab); ``head_conv`` is separable when ``separable_aspp`` is; ``decoder_convs`` is the
    number of 3x3 refining convs of the V3+ decoder (2 in the paper, 1 in smp);
    ``align_corners`` makes the bilinear resizes of the decoder input and logits corner-aligned
    (smp's ``nn.Upsample(align_corners=True)``, TF DeepLab's resize in imported .tflite files).
    """

    backbone: Annotated[str, AfterValidator(_known_backbone)]
    num_classes: int = 21
    width_mult: float = 1.0
    channel_divisor: int = 8
    output_stride: Literal[8, 16, 32] = 16
    head: Literal["aspp", "pooling", "none", "lraspp"] = "aspp"
    atrous_rates: tuple[int, ...] | None = None
    separable_aspp: bool = False
    head_channels: int = 256
    decoder: bool = False
    decoder_channels: int = 256
    low_level_channels: int = 48
    separable_decoder: bool = False
    multi_grid: tuple[int, ...] | None = None
    deep_stem: bool = False
    aux_loss: bool = False
    dropout: float = 0.1
    head_conv: bool = False
    aux_channels: int | None = None
    aux_stride: Literal[8, 16] = 16
    # block variants (head, decoder, final upsampling); the defaults are the published models
    upsampling: Literal["bilinear", "nearest", "transposed"] = "bilinear"
    activation: Literal["relu", "relu6", "hardswish"] = "relu"
    # smp's variants (see the docstring); the defaults are TF DeepLab's / torchvision's
    uniform_dilation: bool = False
    last_channels: int | None = None
    depthwise_bn: bool = True
    decoder_convs: int = Field(2, ge=1, le=4)
    align_corners: bool = False

    @model_validator(mode="after")
    def _check(self) -> ModelConfig:
        if self.num_classes < 1:
            raise ValueError("num_classes must be at least 1")
        # a field another backbone takes and this one does not must stay at its default
        others = backbone_fields() & type(self).model_fields.keys()
        for name in sorted(others - set(get_backbone(self.backbone).fields)):
            if getattr(self, name) != type(self).model_fields[name].default:
                users = ", ".join(_backbones_taking(name))
                raise ValueError(f"{name} applies to {users} only, not {self.backbone}")
        if not 0.1 <= self.width_mult <= 2.0:
            raise ValueError(f"width_mult must be in [0.1, 2.0], got {self.width_mult}")
        return self

    @property
    def arch(self) -> str:
        """'deeplabv3plus' with the decoder, 'deeplabv3' without."""
        return "deeplabv3plus" if self.decoder else "deeplabv3"

    def resolved_rates(self) -> tuple[int, ...]:
        """The ASPP dilation rates actually built, scaled to the output stride."""
        if self.head in ("pooling", "none", "lraspp"):
            return ()
        if self.atrous_rates is not None:
            return tuple(self.atrous_rates)
        return tuple(r * 16 // self.output_stride for r in (6, 12, 18))


class Preprocessing(StrictModel):
    """The input contract: how an image becomes the network's input tensor.

    ``resize``: 'none' keeps the image size; 'longest' scales so the longest side is ``size``
    (aspect ratio kept); 'shorter' so the shorter side is ``size`` (torchvision's eval resize,
    the longer side truncated as it does); 'fixed' resizes to ``size`` x ``size``. The result is
    padded to a multiple of ``pad_multiple`` (bottom/right), and the padding is cropped from the
    output. ``pad_value`` fills the padding: one value, or one per channel in the network's
    channel order. ``border`` adds that many pixels of ``pad_value`` on every side: the zero
    padding of a first convolution into which the input normalisation was folded (the int8 fast
    graph), which therefore has to come from the host, in pixel values.

    A fixed network input of ``input_size`` (height, width; default ``size`` x ``size``), square
    or not, is reached by 'stretch' (resized to it, aspect ratio not kept) or 'letterbox'
    (resized to fit inside it, aspect ratio kept, the rest filled with ``pad_value`` at the
    bottom/right as TF DeepLab pads); the output is cropped and resized back to the image.
    """

    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    channel_order: Literal["RGB", "BGR"] = "RGB"
    layout: Literal["NCHW", "NHWC"] = "NCHW"
    resize: Literal["none", "longest", "shorter", "fixed", "letterbox", "stretch"] = "longest"
    size: int | None = 513
    input_size: tuple[PositiveInt, PositiveInt] | None = None
    pad_multiple: int = 8
    pad_value: float | tuple[float, float, float] = 0.0
    border: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _fixed_input_has_a_size(self) -> Preprocessing:
        if self.resize in ("letterbox", "stretch") and self.input_size is None and not self.size:
            raise ValueError(f"resize '{self.resize}' needs input_size (height, width) or size")
        return self

    def network_input(self) -> tuple[int, int] | None:
        """The fixed (height, width) the network takes under this policy, None if it varies."""
        if self.resize == "fixed" and self.size:
            return self.size, self.size
        if self.resize in ("letterbox", "stretch"):
            return self.input_size or (self.size, self.size)  # type: ignore[return-value]
        return None


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping, raising ConfigError naming the file on any problem."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    if path.stat().st_size > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: {path.stat().st_size} bytes is too large for a config")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise ConfigError(
            f"{path}: malformed YAML{where}: {getattr(exc, 'problem', exc)}"
        ) from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text file") from None
    except RecursionError:
        raise ConfigError(f"{path}: nested too deeply to be a config") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def format_validation_error(error: ValidationError, source: str) -> str:
    """Turn pydantic's error list into one line naming the source and the first bad key."""
    first = error.errors()[0]
    key = ".".join(str(p) for p in first["loc"])
    kind = first["type"]
    if kind == "extra_forbidden":
        return _one_line(f"{source}: unknown key '{key}'")
    if kind == "missing":
        return _one_line(f"{source}: missing required key '{key}'")
    message = first["msg"].removeprefix("Value error, ")
    more = f" (and {len(error.errors()) - 1} more)" if len(error.errors()) > 1 else ""
    where = f" key '{key}':" if key else ""  # a check across sections names its keys itself
    return _one_line(f"{source}:{where} {message}{more}")


def _one_line(text: str) -> str:
    """Escape line breaks (from keys or values in the user's file) so a message stays one line."""
    return text.replace("\r", "\\r").replace("\n", "\\n")


def parse_config(schema: type[T], data: dict[str, Any], source: str = "<config>") -> T:
    """Validate ``data`` against ``schema``; errors become one-line ConfigErrors."""
    try:
        return schema.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source)) from None


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``a.b.c=value`` overrides (values parsed as YAML) to a nested mapping, in place."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected key=value")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            value = raw
        except RecursionError:
            raise ConfigError(f"override {key!r}: value nested too deeply") from None
        node = data
        parts = key.strip().split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override {item!r}: {part!r} is not a section")
            node = child
        node[parts[-1]] = value
    return data


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
            _check_override(str(key), value)
        return self


def _check_override(key: str, value: Any) -> None:
    """ValueError unless ``key`` is a ModelConfig field and ``value`` valid for it alone."""
    try:
        _field_adapter(key).validate_python(value)
    except KeyError:
        raise ValueError(f"overrides: unknown key '{key}'") from None
    except ValidationError as exc:
        message = exc.errors()[0]["msg"].removeprefix("Value error, ")
        raise ValueError(f"overrides: key '{key}': {message}") from None


@cache
def _field_adapter(key: str) -> TypeAdapter:
    """A validator for one ModelConfig field (its type and constraints); KeyError if none."""
    field = ModelConfig.model_fields[key]
    kind = Annotated[(field.annotation, *field.metadata)] if field.metadata else field.annotation
    return TypeAdapter(kind)


def _backbones_taking(field: str) -> list[str]:
    """Registered backbones whose factory takes ``field``."""
    return [n for n in list_backbones() if field in get_backbone(n).fields]


class ExperimentConfig(StrictModel):
    """One training experiment: model, data, train sections and an output folder."""

    model: ModelSection
    data: DataConfig
    train: TrainConfig = TrainConfig()
    out_dir: str = "runs/experiment"

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
