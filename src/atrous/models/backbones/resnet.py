"""ResNet-50 / ResNet-101 backbones (He et al., 2016) with atrous output stride and multi-grid.

Module names mirror torchvision's ``resnet50``/``resnet101`` so their ImageNet state_dicts load
directly; ``deep_stem`` replaces the 7x7 stem by three 3x3 convolutions (ResNet-C, as in timm).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from atrous.models.backbones._base import (
    Backbone,
    FeatureInfo,
    StrideTracker,
    init_weights,
    unit_indices,
)
from atrous.registry import register_backbone

__all__ = ["ResNet", "Bottleneck", "resnet50", "resnet101"]

_DEPTHS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}


class Bottleneck(nn.Module):
    """1x1 reduce -> 3x3 (strided or dilated) -> 1x1 expand (x4), plus the shortcut."""

    expansion = 4

    def __init__(self, cin: int, width: int, stride: int = 1, dilation: int = 1) -> None:
        super().__init__()
        cout = width * self.expansion
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, dilation, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module | None = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
            )

    @property
    def residual_norm(self) -> nn.BatchNorm2d:
        """The BatchNorm closing the residual branch."""
        return self.bn3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet(Backbone):
    """ResNet feature extractor.

    Args:
        depth: 50 or 101.
        output_stride: 8, 16 or 32; strides past it become dilation.
        multi_grid: per-unit dilation multipliers of the last stage, e.g. (1, 2, 4) (DeepLabV3).
        deep_stem: three 3x3 convolutions instead of the 7x7 stem.
        uniform_dilation: the first unit of a dilated stage takes the stage's dilation too
            (smp's encoders) instead of the previous one (torchvision, TF DeepLab).
    """

    def __init__(
        self,
        *,
        depth: int = 50,
        output_stride: int = 16,
        multi_grid: Sequence[int] | None = None,
        deep_stem: bool = False,
        uniform_dilation: bool = False,
    ) -> None:
        super().__init__()
        if depth not in _DEPTHS:
            raise ValueError(f"ResNet depth must be one of {sorted(_DEPTHS)}, got {depth}")
        if deep_stem:
            self.conv1 = nn.Sequential(
                nn.Conv2d(3, 32, 3, 2, 1, bias=False),
                nn.BatchNorm2d(32),
                nn.ReLU(inplace=True),
                nn.Conv2d(32, 32, 3, 1, 1, bias=False),
                nn.BatchNorm2d(32),
                nn.ReLU(inplace=True),
                nn.Conv2d(32, 64, 3, 1, 1, bias=False),
            )
        else:
            self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        tracker = StrideTracker(output_stride, start=4, uniform=uniform_dilation)
        cin = 64
        for index, (blocks, stride) in enumerate(zip(_DEPTHS[depth], (1, 2, 2, 2), strict=True)):
            width = 64 * 2**index
            stride, dilation = tracker.step(stride)
            last = index == 3
            units = []
            for i in range(blocks):
                unit_dilation = tracker.first_dilation if i == 0 else dilation
                if last and multi_grid:
                    unit_dilation = dilation * multi_grid[i % len(multi_grid)]
                units.append(Bottleneck(cin, width, stride if i == 0 else 1, unit_dilation))
                cin = width * Bottleneck.expansion
            setattr(self, f"layer{index + 1}", nn.Sequential(*units))
        self.feature_info = [
            FeatureInfo("low", 256, 4),
            FeatureInfo("aux", 1024, min(16, output_stride)),
            FeatureInfo("out", 2048, output_stride),
        ]
        init_weights(self)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        low = self.layer1(x)
        aux = self.layer3(self.layer2(low))
        return [low, aux, self.layer4(aux)]


def _signature(state: Mapping[str, Any]) -> dict[str, Any] | None:
    """``layer4.`` keys; bottleneck units (conv3), the depth from the units of layer3, the
    stem from its first key."""
    if not any(k.startswith("layer4.") for k in state):
        return None
    if "layer1.0.conv3.weight" not in state:
        raise ValueError("ResNet with basic blocks (resnet18/34) is not resnet50 or resnet101")
    units = len(unit_indices(state, r"layer3\.(\d+)\."))
    depth = next((d for d, blocks in _DEPTHS.items() if blocks[2] == units), None)
    if depth is None:
        names = " or ".join(str(d) for d in _DEPTHS)
        raise ValueError(f"ResNet with {units} units in layer3 is not {names}")
    return {"backbone": f"resnet{depth}", "deep_stem": "conv1.0.weight" in state}


_FIELDS = ("multi_grid", "deep_stem", "uniform_dilation")


def _builder(depth: int) -> Callable[..., ResNet]:
    """The keyword-only factory of ResNet-``depth`` (the registry's contract)."""

    def build(
        *,
        output_stride: int = 16,
        multi_grid: Sequence[int] | None = None,
        deep_stem: bool = False,
        uniform_dilation: bool = False,
    ) -> ResNet:
        return ResNet(
            depth=depth,
            output_stride=output_stride,
            multi_grid=multi_grid,
            deep_stem=deep_stem,
            uniform_dilation=uniform_dilation,
        )

    build.__name__ = build.__qualname__ = f"resnet{depth}"
    build.__doc__ = f"ResNet-{depth} at ``output_stride`` (see :class:`ResNet` for the arguments)."
    return build


resnet50 = register_backbone("resnet50", fields=_FIELDS, signature=_signature)(_builder(50))
resnet101 = register_backbone("resnet101", fields=_FIELDS, signature=_signature)(_builder(101))
