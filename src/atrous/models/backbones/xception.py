"""Aligned Xception-65 / Xception-71 backbones as used by DeepLabV3+ (Chen et al., 2018).

Every max-pool of the original Xception is a strided separable convolution, every separable
convolution is followed by BatchNorm, and the middle flow has 16 units. Xception-71 splits two
entry-flow units so that more work happens at strides 4 and 8.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from atrous.models.atrous_conv import AtrousConv2d
from atrous.models.backbones._base import (
    Backbone,
    FeatureInfo,
    StrideTracker,
    init_weights,
    unit_indices,
)
from atrous.registry import register_backbone

__all__ = ["Xception", "SeparableConv2d", "XceptionBlock", "xception65", "xception71"]

# Entry flow per variant: (channels, stride); all entry units use a projected (conv) shortcut.
_ENTRY = {
    65: [(128, 2), (256, 2), (728, 2)],
    71: [(128, 2), (256, 1), (256, 2), (728, 1), (728, 2)],
}
# Index of the entry unit whose second separable conv gives the stride-4 low-level features.
_LOW_UNIT = {65: 1, 71: 2}


class SeparableConv2d(nn.Module):
    """Depthwise 3x3 (strided or dilated) -> BN -> [ReLU] -> pointwise 1x1 -> BN -> [ReLU]."""

    def __init__(
        self, cin: int, cout: int, stride: int = 1, dilation: int = 1, relu: bool = False
    ) -> None:
        super().__init__()
        self.depthwise = AtrousConv2d(
            cin, cin, 3, stride, dilation, dilation=dilation, groups=cin, bias=False
        )
        self.bn_depth = nn.BatchNorm2d(cin)
        self.pointwise = nn.Conv2d(cin, cout, 1, bias=False)
        self.bn_point = nn.BatchNorm2d(cout)
        self.act = nn.ReLU(inplace=True) if relu else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.bn_depth(self.depthwise(x)))
        return self.act(self.bn_point(self.pointwise(x)))


class XceptionBlock(nn.Module):
    """Three separable convs (the last one strided) with a 'conv', 'sum' or 'none' shortcut.

    With ``relu_inside`` False (entry and middle flow), ReLU precedes each separable conv
    (pre-activation); with True (last exit unit), ReLU follows depthwise and pointwise.
    """

    def __init__(
        self,
        cin: int,
        channels: Sequence[int],
        stride: int = 1,
        dilations: Sequence[int] = (1, 1, 1),
        shortcut: str = "conv",
        relu_inside: bool = False,
    ) -> None:
        super().__init__()
        self.relu_inside = relu_inside
        self.pre_relu = nn.ReLU(inplace=False)
        convs = []
        for i, (cout, dilation) in enumerate(zip(channels, dilations, strict=True)):
            convs.append(
                SeparableConv2d(cin, cout, stride if i == 2 else 1, dilation, relu=relu_inside)
            )
            cin = cout
        self.convs = nn.ModuleList(convs)
        self.shortcut_kind = shortcut
        self.shortcut: nn.Module | None = None
        if shortcut == "conv":
            self.shortcut = nn.Sequential(
                nn.Conv2d(convs[0].depthwise.in_channels, cin, 1, stride, bias=False),
                nn.BatchNorm2d(cin),
            )

    def forward_with_mid(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the unit's output and the output of its second separable conv."""
        out = x
        mid = x
        for i, conv in enumerate(self.convs):
            if not self.relu_inside:
                out = self.pre_relu(out)
            out = conv(out)
            if i == 1:
                mid = out
        if self.shortcut is not None:
            out = out + self.shortcut(x)
        elif self.shortcut_kind == "sum":
            out = out + x
        return out, mid

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_with_mid(x)[0]


class Xception(Backbone):
    """Aligned Xception feature extractor.

    Args:
        depth: 65 or 71.
        output_stride: 8, 16 or 32; strides past it become dilation.
        multi_grid: per-conv dilation multipliers of the last exit unit, e.g. (1, 2, 4).
    """

    def __init__(
        self, *, depth: int = 65, output_stride: int = 16, multi_grid: Sequence[int] | None = None
    ) -> None:
        super().__init__()
        if depth not in _ENTRY:
            raise ValueError(f"Xception depth must be one of {sorted(_ENTRY)}, got {depth}")
        self.stem = nn.Sequential(
            nn.Conv2d(3, 32, 3, 2, 1, bias=False),
            nn.BatchNorm2d(32),
            nn.ReLU(inplace=True),
            nn.Conv2d(32, 64, 3, 1, 1, bias=False),
            nn.BatchNorm2d(64),
            nn.ReLU(inplace=True),
        )
        tracker = StrideTracker(output_stride, start=2)
        cin = 64
        entry = []
        for cout, stride in _ENTRY[depth]:
            stride, dilation = tracker.step(stride)
            d = tracker.first_dilation
            entry.append(XceptionBlock(cin, (cout,) * 3, stride, (d, d, dilation)))
            cin = cout
        self.entry_flow = nn.ModuleList(entry)
        self._low_unit = _LOW_UNIT[depth]
        _, dilation = tracker.step(1)
        self.middle_flow = nn.Sequential(
            *[XceptionBlock(728, (728,) * 3, 1, (dilation,) * 3, "sum") for _ in range(16)]
        )
        stride, dilation = tracker.step(2)
        d = tracker.first_dilation
        exit1 = XceptionBlock(728, (728, 1024, 1024), stride, (d, d, dilation))
        grid = tuple(multi_grid) if multi_grid else (1, 1, 1)
        exit2 = XceptionBlock(
            1024, (1536, 1536, 2048), 1, tuple(dilation * g for g in grid), "none", relu_inside=True
        )
        self.exit_flow = nn.Sequential(exit1, exit2)
        low_channels = _ENTRY[depth][self._low_unit][0]
        self.feature_info = [
            FeatureInfo("low", low_channels, 4),
            FeatureInfo("aux", 728, min(16, output_stride)),
            FeatureInfo("out", 2048, output_stride),
        ]
        init_weights(self)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        low = x
        for i, unit in enumerate(self.entry_flow):
            x, mid = unit.forward_with_mid(x)
            if i == self._low_unit:
                low = mid
        aux = self.middle_flow(x)
        return [low, aux, self.exit_flow(aux)]


def _signature(state: Mapping[str, Any]) -> dict[str, Any] | None:
    """``entry_flow.`` keys; the depth from the number of entry-flow units."""
    units = len(unit_indices(state, r"entry_flow\.(\d+)\."))
    if not units:
        return None
    depth = next((d for d, entry in _ENTRY.items() if len(entry) == units), None)
    if depth is None:
        names = " or ".join(str(d) for d in _ENTRY)
        raise ValueError(f"Xception with {units} entry units is not {names}")
    return {"backbone": f"xception{depth}"}


@register_backbone("xception65", fields=("multi_grid",), signature=_signature)
def xception65(*, output_stride: int = 16, multi_grid: Sequence[int] | None = None) -> Xception:
    """Aligned Xception-65 at ``output_stride`` (see :class:`Xception` for the arguments)."""
    return Xception(depth=65, output_stride=output_stride, multi_grid=multi_grid)


@register_backbone("xception71", fields=("multi_grid",), signature=_signature)
def xception71(*, output_stride: int = 16, multi_grid: Sequence[int] | None = None) -> Xception:
    """Aligned Xception-71 at ``output_stride`` (see :class:`Xception` for the arguments)."""
    return Xception(depth=71, output_stride=output_stride, multi_grid=multi_grid)
