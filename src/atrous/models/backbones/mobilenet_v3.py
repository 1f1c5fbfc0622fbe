"""MobileNetV3 Large and Small backbones (Howard et al., 2019) with atrous output stride.

Hardswish, squeeze-excite gated by hardsigmoid, torchvision's block tables and channel rounding.
Module names mirror torchvision's ``mobilenet_v3_large``/``_small`` ``features`` (``features.N
.block.M``), so its state_dicts load with the ``backbone.`` prefix only. Past the output stride
every unit of a stage is dilated, its first one included, as torchvision's ``dilated=True`` does
(unlike ResNet's convention); the final 1x1 convolution (960 / 576 channels) is kept.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import Any, NamedTuple

import torch
from torch import nn

from atrous.models.backbones._base import (
    Backbone,
    FeatureInfo,
    StrideTracker,
    init_weights,
    make_divisible,
    unit_indices,
)
from atrous.registry import register_backbone

__all__ = [
    "MobileNetV3",
    "SqueezeExcitation",
    "InvertedResidualV3",
    "mobilenet_v3_large",
    "mobilenet_v3_small",
]


class _Unit(NamedTuple):
    """One inverted-residual unit: kernel, expanded and output channels, SE, hardswish, stride."""

    kernel: int
    expanded: int
    out: int
    se: bool
    hs: bool
    stride: int


# torchvision's _mobilenet_v3_conf tables (input channels follow from the previous unit).
_LARGE = [
    _Unit(3, 16, 16, False, False, 1),
    _Unit(3, 64, 24, False, False, 2),
    _Unit(3, 72, 24, False, False, 1),
    _Unit(5, 72, 40, True, False, 2),
    _Unit(5, 120, 40, True, False, 1),
    _Unit(5, 120, 40, True, False, 1),
    _Unit(3, 240, 80, False, True, 2),
    _Unit(3, 200, 80, False, True, 1),
    _Unit(3, 184, 80, False, True, 1),
    _Unit(3, 184, 80, False, True, 1),
    _Unit(3, 480, 112, True, True, 1),
    _Unit(3, 672, 112, True, True, 1),
    _Unit(5, 672, 160, True, True, 2),
    _Unit(5, 960, 160, True, True, 1),
    _Unit(5, 960, 160, True, True, 1),
]
_SMALL = [
    _Unit(3, 16, 16, True, False, 2),
    _Unit(3, 72, 24, False, False, 2),
    _Unit(3, 88, 24, False, False, 1),
    _Unit(5, 96, 40, True, True, 2),
    _Unit(5, 240, 40, True, True, 1),
    _Unit(5, 240, 40, True, True, 1),
    _Unit(5, 120, 48, True, True, 1),
    _Unit(5, 144, 48, True, True, 1),
    _Unit(5, 288, 96, True, True, 2),
    _Unit(5, 576, 96, True, True, 1),
    _Unit(5, 576, 96, True, True, 1),
]
_TABLES = {"large": _LARGE, "small": _SMALL}
_LAST_OUT = {"large": 160, "small": 96}  # the last unit's channels at width 1 (signature)

# torchvision builds MobileNetV3 with BatchNorm(eps=0.001, momentum=0.01)
_Norm = partial(nn.BatchNorm2d, eps=0.001, momentum=0.01)


class ConvNormAct(nn.Sequential):
    """Conv (no bias) -> BatchNorm (eps 1e-3) -> activation (torchvision Conv2dNormActivation)."""

    def __init__(
        self,
        cin: int,
        cout: int,
        kernel: int = 1,
        stride: int = 1,
        groups: int = 1,
        dilation: int = 1,
        act: type[nn.Module] | None = nn.ReLU,
    ) -> None:
        padding = (kernel - 1) // 2 * dilation
        layers: list[nn.Module] = [
            nn.Conv2d(cin, cout, kernel, stride, padding, dilation, groups, bias=False),
            _Norm(cout),
        ]
        if act is not None:
            layers.append(act(inplace=True))
        super().__init__(*layers)


class SqueezeExcitation(nn.Module):
    """Global pool -> 1x1 squeeze -> ReLU -> 1x1 excite -> hardsigmoid, scaling the input."""

    def __init__(self, channels: int, squeeze: int) -> None:
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.fc2 = nn.Conv2d(squeeze, channels, 1)
        self.activation = nn.ReLU()
        self.scale_activation = nn.Hardsigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.fc2(self.activation(self.fc1(self.avgpool(x))))
        return self.scale_activation(scale) * x


class InvertedResidualV3(nn.Module):
    """[Expand 1x1] -> depthwise k x k (strided or dilated) -> [SE] -> linear 1x1, residual when
    the nominal stride is 1 and the channels match."""

    def __init__(
        self, cin: int, unit: _Unit, width_mult: float, stride: int, dilation: int
    ) -> None:
        super().__init__()
        expanded = make_divisible(unit.expanded * width_mult, 8)
        cout = make_divisible(unit.out * width_mult, 8)
        act = nn.Hardswish if unit.hs else nn.ReLU
        self.use_residual = unit.stride == 1 and cin == cout
        layers: list[nn.Module] = []
        if expanded != cin:
            layers.append(ConvNormAct(cin, expanded, act=act))
        layers.append(
            ConvNormAct(expanded, expanded, unit.kernel, stride, expanded, dilation, act=act)
        )
        if unit.se:
            layers.append(SqueezeExcitation(expanded, make_divisible(expanded // 4, 8)))
        layers.append(ConvNormAct(expanded, cout, act=None))
        self.block = nn.Sequential(*layers)
        self.out_channels = cout

    @property
    def residual_norm(self) -> nn.BatchNorm2d | None:
        """The BatchNorm closing the residual branch (None without a shortcut)."""
        return self.block[-1][1] if self.use_residual else None  # type: ignore[return-value]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        return x + out if self.use_residual else out


class MobileNetV3(Backbone):
    """MobileNetV3 feature extractor (``features`` as in torchvision, classifier dropped).

    Args:
        variant: 'large' or 'small'.
        width_mult: channel multiplier; channels rounded to multiples of 8 (torchvision).
        output_stride: 8, 16 or 32; strides past it become dilation of the whole stage.
        aux_stride: 16 taps ``aux`` at the end of the stride-16 stage (min(16, output_stride));
            8 taps torchvision's C2, the output of the strided unit of the stride-8 stage, which
            its LR-ASPP ("low") and DeepLabV3 aux heads read.
    """

    def __init__(
        self,
        *,
        variant: str = "large",
        width_mult: float = 1.0,
        output_stride: int = 16,
        aux_stride: int = 16,
    ) -> None:
        super().__init__()
        if aux_stride not in (8, 16):
            raise ValueError(f"aux_stride must be 8 or 16, got {aux_stride}")
        table = _TABLES[variant]
        tracker = StrideTracker(output_stride, start=2)
        cin = make_divisible(16 * width_mult, 8)
        features: list[nn.Module] = [ConvNormAct(3, cin, 3, 2, act=nn.Hardswish)]
        nominal = 2  # the stride each unit would run at without dilation
        taps: dict[str, tuple[int, int]] = {}  # role -> (features index, channels)
        for unit in table:
            stride, dilation = tracker.step(unit.stride)
            nominal *= unit.stride
            features.append(InvertedResidualV3(cin, unit, width_mult, stride, dilation))
            cin = features[-1].out_channels
            index = len(features) - 1
            if nominal == 4:
                taps["low"] = (index, cin)
            if nominal == 8 and unit.stride == 2 and aux_stride == 8:
                taps["aux"] = (index, cin)
            if nominal == 16 and aux_stride == 16:
                taps["aux"] = (index, cin)
        features.append(ConvNormAct(cin, 6 * cin, act=nn.Hardswish))
        self.features = nn.Sequential(*features)
        self._low_index, self._aux_index = taps["low"][0], taps["aux"][0]
        self.feature_info = [
            FeatureInfo("low", taps["low"][1], 4),
            FeatureInfo("aux", taps["aux"][1], min(aux_stride, output_stride)),
            FeatureInfo("out", 6 * cin, output_stride),
        ]
        init_weights(self)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        low = aux = x
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i == self._low_index:
                low = x
            if i == self._aux_index:
                aux = x
        return [low, aux, x]


def _signature(state: Mapping[str, Any]) -> dict[str, Any] | None:
    """``features.N.block.`` keys; Large or Small from the unit count, the width from the last
    unit's output channels."""
    units = unit_indices(state, r"features\.(\d+)\.block\.")
    if not units:
        return None
    variant = next((v for v, t in _TABLES.items() if len(t) == len(units)), None)
    if variant is None:
        raise ValueError(f"MobileNetV3 with {len(units)} units is neither Large nor Small")
    last = max(units)
    out = state[f"features.{last}.block.{_last_block(state, last)}.0.weight"].shape[0]
    width = round(int(out) / _LAST_OUT[variant] * 20) / 20
    return {"backbone": f"mobilenet_v3_{variant}", "width_mult": width}


def _last_block(state: Mapping[str, Any], unit: int) -> int:
    """Index of the projection (last layer) inside unit ``unit``'s block."""
    return max(unit_indices(state, rf"features\.{unit}\.block\.(\d+)\."))


_FIELDS = ("width_mult", "aux_stride")


@register_backbone("mobilenet_v3_large", fields=_FIELDS, signature=_signature)
def mobilenet_v3_large(
    *, output_stride: int = 16, width_mult: float = 1.0, aux_stride: int = 16
) -> MobileNetV3:
    """MobileNetV3-Large at ``output_stride`` (see :class:`MobileNetV3` for the arguments)."""
    return MobileNetV3(
        variant="large", width_mult=width_mult, output_stride=output_stride, aux_stride=aux_stride
    )


@register_backbone("mobilenet_v3_small", fields=_FIELDS, signature=_signature)
def mobilenet_v3_small(
    *, output_stride: int = 16, width_mult: float = 1.0, aux_stride: int = 16
) -> MobileNetV3:
    """MobileNetV3-Small at ``output_stride`` (see :class:`MobileNetV3` for the arguments)."""
    return MobileNetV3(
        variant="small", width_mult=width_mult, output_stride=output_stride, aux_stride=aux_stride
    )
