"""The architecture config (ModelConfig, checked against the backbone registry) and the input
contract (Preprocessing)."""

from __future__ import annotations

from functools import cache
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    Field,
    PositiveInt,
    TypeAdapter,
    ValidationError,
    model_validator,
)

from atrous.config._base import StrictModel
from atrous.registry import backbone_fields, get_backbone, list_backbones


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


def check_override(key: str, value: Any) -> None:
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
