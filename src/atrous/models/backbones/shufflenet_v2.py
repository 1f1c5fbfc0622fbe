"""ShuffleNetV2 backbone (Ma et al., 2018) at widths 0.5x, 1.0x, 1.5x and 2.0x, atrous past the
output stride.

Module names mirror torchvision's ``shufflenet_v2_x*`` (``conv1``, ``stage2``-``stage4``, units
with ``branch1`` / ``branch2``), so its ImageNet state_dicts load directly; the classifier's
``conv5`` and ``fc`` are dropped, as MobileNetV2 drops its last 1x1 convolution here: the head
reads the 4x-wider ``stage4`` features directly. ``low`` is the stem's stride-4 output (after
the max-pool; 24 channels), ``aux`` the end of ``stage3``, ``out`` the end of ``stage4``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from atrous.models.atrous_conv import AtrousConv2d
from atrous.models.backbones._base import Backbone, FeatureInfo, StrideTracker, init_weights
from atrous.registry import register_backbone

__all__ = [
    "ShuffleNetV2",
    "ShuffleUnit",
    "channel_shuffle",
    "STAGE_CHANNELS",
    "shufflenet_v2_x0_5",
    "shufflenet_v2_x1_0",
    "shufflenet_v2_x1_5",
    "shufflenet_v2_x2_0",
]

# Output channels of the stem, stage2, stage3, stage4 and conv5 per width (the paper's Table 5).
STAGE_CHANNELS: dict[str, tuple[int, int, int, int, int]] = {
    "x0_5": (24, 48, 96, 192, 1024),
    "x1_0": (24, 116, 232, 464, 1024),
    "x1_5": (24, 176, 352, 704, 1024),
    "x2_0": (24, 244, 488, 976, 2048),
}
_REPEATS = (4, 8, 4)  # units in stage2, stage3, stage4


def channel_shuffle(x: torch.Tensor, groups: int = 2) -> torch.Tensor:
    """Interleave the channels of ``groups`` halves (reshape -> transpose -> reshape), so the
    next unit's split mixes both branches; any height and width (exports with dynamic axes)."""
    n, c, h, w = x.shape  # traced as shape ops, not constants (unflatten bakes them in)
    return x.reshape(n, groups, c // groups, h, w).transpose(1, 2).reshape(n, c, h, w)


def _depthwise(channels: int, stride: int, dilation: int) -> AtrousConv2d:
    """3x3 depthwise 'same' convolution (strided or dilated)."""
    return AtrousConv2d(
        channels, channels, 3, stride, dilation, dilation=dilation, groups=channels, bias=False
    )


class ShuffleUnit(nn.Module):
    """One ShuffleNetV2 unit: channel split, one branch transformed, concat, shuffle.

    A downsampling unit (the first of a stage) feeds the whole input to both branches
    (``branch1``: depthwise 3x3 -> 1x1; ``branch2``: 1x1 -> depthwise 3x3 -> 1x1), doubling the
    channels; it keeps both branches when its stride became dilation past the output stride.

    Args:
        cin: input channels.
        cout: output channels (even).
        stride: 2 for a downsampling unit at or below the output stride, else 1.
        dilation: dilation of the depthwise convolutions.
        downsample: whether this is a stage's first unit (two branches, no split).
    """

    def __init__(
        self, cin: int, cout: int, stride: int = 1, dilation: int = 1, downsample: bool = False
    ) -> None:
        super().__init__()
        half = cout // 2
        self.downsample = downsample
        if downsample:
            self.branch1 = nn.Sequential(
                _depthwise(cin, stride, dilation),
                nn.BatchNorm2d(cin),
                nn.Conv2d(cin, half, 1, bias=False),
                nn.BatchNorm2d(half),
                nn.ReLU(inplace=True),
            )
        self.branch2 = nn.Sequential(
            nn.Conv2d(cin if downsample else half, half, 1, bias=False),
            nn.BatchNorm2d(half),
            nn.ReLU(inplace=True),
            _depthwise(half, stride, dilation),
            nn.BatchNorm2d(half),
            nn.Conv2d(half, half, 1, bias=False),
            nn.BatchNorm2d(half),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.downsample:
            out = torch.cat([self.branch1(x), self.branch2(x)], dim=1)
        else:
            x1, x2 = x.chunk(2, dim=1)
            out = torch.cat([x1, self.branch2(x2)], dim=1)
        return channel_shuffle(out, 2)


class ShuffleNetV2(Backbone):
    """ShuffleNetV2 feature extractor.

    Args:
        width: one of ``STAGE_CHANNELS`` ('x0_5', 'x1_0', 'x1_5', 'x2_0').
        output_stride: 8, 16 or 32; the strides of stage3/stage4 past it become dilation.
    """

    def __init__(self, *, width: str = "x1_0", output_stride: int = 16) -> None:
        super().__init__()
        stem, *stages = STAGE_CHANNELS[width][:4]
        self.conv1 = nn.Sequential(
            nn.Conv2d(3, stem, 3, 2, 1, bias=False), nn.BatchNorm2d(stem), nn.ReLU(inplace=True)
        )
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        tracker = StrideTracker(output_stride, start=4)
        cin = stem
        for index, (cout, repeats) in enumerate(zip(stages, _REPEATS, strict=True)):
            stride, dilation = tracker.step(2)
            units = [ShuffleUnit(cin, cout, stride, tracker.first_dilation, downsample=True)]
            units += [ShuffleUnit(cout, cout, 1, dilation) for _ in range(repeats - 1)]
            setattr(self, f"stage{index + 2}", nn.Sequential(*units))
            cin = cout
        self.feature_info = [
            FeatureInfo("low", stem, 4),
            FeatureInfo("aux", stages[1], min(16, output_stride)),
            FeatureInfo("out", stages[2], output_stride),
        ]
        init_weights(self)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        low = self.maxpool(self.conv1(x))
        aux = self.stage3(self.stage2(low))
        return [low, aux, self.stage4(aux)]


def _signature(state: Mapping[str, Any]) -> dict[str, Any] | None:
    """``stage4.0.branch1.`` keys; the width from stage4's output channels (twice a branch's)."""
    if "stage4.0.branch1.0.weight" not in state:
        return None
    out = 2 * int(state["stage4.0.branch2.5.weight"].shape[0])
    width = next((w for w, c in STAGE_CHANNELS.items() if c[3] == out), None)
    if width is None:
        known = ", ".join(str(c[3]) for c in STAGE_CHANNELS.values())
        raise ValueError(f"ShuffleNetV2 with {out} stage4 channels is not one of {known}")
    return {"backbone": f"shufflenet_v2_{width}"}


@register_backbone("shufflenet_v2_x0_5", signature=_signature)
def shufflenet_v2_x0_5(*, output_stride: int = 16) -> ShuffleNetV2:
    """ShuffleNetV2 0.5x (41 M multiply-adds as an ImageNet classifier at 224)."""
    return ShuffleNetV2(width="x0_5", output_stride=output_stride)


@register_backbone("shufflenet_v2_x1_0", signature=_signature)
def shufflenet_v2_x1_0(*, output_stride: int = 16) -> ShuffleNetV2:
    """ShuffleNetV2 1.0x (146 M multiply-adds as an ImageNet classifier at 224)."""
    return ShuffleNetV2(width="x1_0", output_stride=output_stride)


@register_backbone("shufflenet_v2_x1_5", signature=_signature)
def shufflenet_v2_x1_5(*, output_stride: int = 16) -> ShuffleNetV2:
    """ShuffleNetV2 1.5x (299 M multiply-adds as an ImageNet classifier at 224)."""
    return ShuffleNetV2(width="x1_5", output_stride=output_stride)


@register_backbone("shufflenet_v2_x2_0", signature=_signature)
def shufflenet_v2_x2_0(*, output_stride: int = 16) -> ShuffleNetV2:
    """ShuffleNetV2 2.0x (591 M multiply-adds as an ImageNet classifier at 224)."""
    return ShuffleNetV2(width="x2_0", output_stride=output_stride)
