"""MobileNetV2 backbone (Sandler et al., 2018) with width multiplier and atrous output stride.

Module names mirror torchvision's ``mobilenet_v2`` so its ImageNet state_dicts load directly; the
final 1280-channel 1x1 convolution is dropped, as in TF DeepLab (features end at ``layer_18``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from atrous.models.atrous_conv import AtrousConv2d
from atrous.models.backbones._base import (
    Backbone,
    FeatureInfo,
    StrideTracker,
    init_weights,
    make_divisible,
    unit_indices,
)
from atrous.registry import register_backbone

__all__ = ["MobileNetV2", "ConvBNReLU6", "InvertedResidual", "mobilenet_v2"]

# (expansion t, output channels c, repeats n, stride s) from the paper's Table 2.
_SETTINGS = [
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
]


class ConvBNReLU6(nn.Sequential):
    """Conv -> BatchNorm -> ReLU6, padding chosen so that stride 1 keeps the spatial size."""

    def __init__(
        self,
        cin: int,
        cout: int,
        kernel: int = 3,
        stride: int = 1,
        groups: int = 1,
        dilation: int = 1,
    ) -> None:
        padding = (kernel - 1) // 2 * dilation
        super().__init__(
            AtrousConv2d(
                cin, cout, kernel, stride, padding, dilation=dilation, groups=groups, bias=False
            ),
            nn.BatchNorm2d(cout),
            nn.ReLU6(inplace=True),
        )


class InvertedResidual(nn.Module):
    """Expand 1x1 -> depthwise 3x3 (strided or dilated) -> linear 1x1, residual if shapes allow."""

    def __init__(self, cin: int, cout: int, stride: int, expansion: int, dilation: int = 1) -> None:
        super().__init__()
        hidden = int(round(cin * expansion))
        self.use_residual = stride == 1 and cin == cout
        layers: list[nn.Module] = []
        if expansion != 1:
            layers.append(ConvBNReLU6(cin, hidden, kernel=1))
        layers += [
            ConvBNReLU6(hidden, hidden, stride=stride, groups=hidden, dilation=dilation),
            nn.Conv2d(hidden, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
        ]
        self.conv = nn.Sequential(*layers)

    @property
    def residual_norm(self) -> nn.BatchNorm2d | None:
        """The BatchNorm closing the residual branch (None without a shortcut)."""
        return self.conv[-1] if self.use_residual else None  # type: ignore[return-value]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)
        return x + out if self.use_residual else out


class MobileNetV2(Backbone):
    """MobileNetV2 feature extractor.

    Args:
        width_mult: channel multiplier (0.35, 0.5, 0.75 or 1.0 in published models); channels
            are rounded to multiples of 8 as in the paper.
        output_stride: 8, 16 or 32; strides past it become dilation.
        channel_divisor: channels are rounded to multiples of this (8 in the paper; TF DeepLab
            uses 1 for width multipliers other than 1.0, which is what its 0.88 G model has).
        uniform_dilation: the first unit of a dilated stage takes the stage's dilation too
            (smp's encoders) instead of the previous one (TF DeepLab, torchvision).
        last_channels: append torchvision's final 1x1 conv + BN + ReLU6 to this many channels
            (1280 in torchvision and smp); None ends at the 320-channel unit (TF DeepLab).
    """

    def __init__(
        self,
        *,
        width_mult: float = 1.0,
        output_stride: int = 16,
        channel_divisor: int = 8,
        uniform_dilation: bool = False,
        last_channels: int | None = None,
    ) -> None:
        super().__init__()
        tracker = StrideTracker(output_stride, start=2, uniform=uniform_dilation)

        def channels_of(c: int) -> int:
            return make_divisible(c * width_mult, channel_divisor)

        cin = channels_of(32)
        features: list[nn.Module] = [ConvBNReLU6(3, cin, stride=2)]
        low_index = aux_index = 0
        for t, c, n, s in _SETTINGS:
            cout = channels_of(c)
            stride, dilation = tracker.step(s)
            for i in range(n):
                unit_dilation = tracker.first_dilation if i == 0 else dilation
                features.append(
                    InvertedResidual(cin, cout, stride if i == 0 else 1, t, unit_dilation)
                )
                cin = cout
            if c == 24:
                low_index = len(features) - 1
            if c == 96:
                aux_index = len(features) - 1
        if last_channels is not None:  # 1x1: no stride or dilation to set
            features.append(ConvBNReLU6(cin, last_channels, kernel=1))
            cin = last_channels
        self.features = nn.Sequential(*features)
        self._low_index, self._aux_index = low_index, aux_index
        self.feature_info = [
            FeatureInfo("low", channels_of(24), 4),
            FeatureInfo("aux", channels_of(96), min(16, output_stride)),
            FeatureInfo("out", cin, output_stride),
        ]
        init_weights(self)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        low = aux = x
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i == self._low_index:
                low = x
            elif i == self._aux_index:
                aux = x
        return [low, aux, x]


def _signature(state: Mapping[str, Any]) -> dict[str, Any] | None:
    """``features.N.`` keys; the width from the last unit's channels (320 at width 1), the
    channel divisor from whether the stride-4 unit's 24 channels were rounded to eight."""
    units = unit_indices(state, r"features\.(\d+)\.conv\.")
    if not units:
        return None
    out = int(state[f"features.{max(units)}.conv.2.weight"].shape[0])
    width = round(out / 320 * 20) / 20
    low = int(state["features.3.conv.2.weight"].shape[0])
    divisor = 8 if low == make_divisible(24 * width, 8) else 1
    found = {"backbone": "mobilenet_v2", "width_mult": width, "channel_divisor": divisor}
    last = state.get(f"features.{max(units) + 1}.0.weight")
    if last is not None:  # torchvision's final 1x1 conv
        found["last_channels"] = int(last.shape[0])
    return found


_FIELDS = ("width_mult", "channel_divisor", "uniform_dilation", "last_channels")


@register_backbone("mobilenet_v2", fields=_FIELDS, signature=_signature)
def mobilenet_v2(
    *,
    output_stride: int = 16,
    width_mult: float = 1.0,
    channel_divisor: int = 8,
    uniform_dilation: bool = False,
    last_channels: int | None = None,
) -> MobileNetV2:
    """MobileNetV2 at ``output_stride`` (see :class:`MobileNetV2` for the arguments)."""
    return MobileNetV2(
        width_mult=width_mult,
        output_stride=output_stride,
        channel_divisor=channel_divisor,
        uniform_dilation=uniform_dilation,
        last_channels=last_channels,
    )
