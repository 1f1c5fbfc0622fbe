"""The feature contract every backbone honours, and the helpers that build it."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from torch import nn

__all__ = [
    "FeatureInfo",
    "Backbone",
    "make_divisible",
    "StrideTracker",
    "init_weights",
    "zero_init_residuals",
    "unit_indices",
]


@dataclass(frozen=True)
class FeatureInfo:
    """One returned feature map: its role, channel count and reduction (stride) w.r.t. the input."""

    name: str
    channels: int
    reduction: int


class Backbone(nn.Module):
    """Base class: ``forward(x)`` returns ``[low, aux, out]`` described by ``feature_info``.

    ``low`` is at stride 4 (for the V3+ decoder), ``aux`` is the penultimate stage (for the
    auxiliary head) and ``out`` is at the output stride.
    """

    feature_info: list[FeatureInfo]


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round channels to a multiple of ``divisor``, losing at most 10% (MobileNetV2)."""
    min_value = min_value or divisor
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


class StrideTracker:
    """Turns strides into dilation once the running stride reaches ``output_stride``.

    Call :meth:`step` with each stage's nominal stride; it returns ``(stride, dilation)`` to build
    that stage with. The stage that would overshoot keeps the previous dilation for its first unit
    (see :attr:`first_dilation`), as in TF DeepLab and torchvision; with ``uniform`` it takes
    the stage's dilation like the others (smp's ``make_dilated``).
    """

    def __init__(self, output_stride: int, start: int = 1, uniform: bool = False) -> None:
        if output_stride not in (8, 16, 32):
            raise ValueError(f"output_stride must be 8, 16 or 32, got {output_stride}")
        self.output_stride = output_stride
        self.current = start
        self.dilation = 1
        self.first_dilation = 1
        self.uniform = uniform

    def step(self, stride: int) -> tuple[int, int]:
        """Return (stride, dilation) for a stage of nominal ``stride``."""
        self.first_dilation = self.dilation
        if stride > 1 and self.current >= self.output_stride:
            self.dilation *= stride
            if self.uniform:
                self.first_dilation = self.dilation
            return 1, self.dilation
        self.current *= stride
        return stride, self.dilation


def init_weights(module: nn.Module) -> None:
    """Kaiming-normal convolutions, unit BatchNorm: the usual from-scratch initialisation."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def zero_init_residuals(model: nn.Module) -> int:
    """Zero the last BatchNorm scale of every residual branch; return how many were zeroed.

    Each residual block then starts as the identity, which shortens the from-scratch plateau
    (Goyal et al. 2017; torchvision's ``zero_init_residual``). Blocks opt in by exposing the
    norm as ``residual_norm``.
    """
    count = 0
    for module in model.modules():
        norm = getattr(module, "residual_norm", None)
        if isinstance(norm, nn.BatchNorm2d):
            nn.init.zeros_(norm.weight)
            count += 1
    return count


def unit_indices(keys: Iterable[str], pattern: str) -> set[int]:
    """The distinct integer indices captured by ``pattern``'s group (units of a stage)."""
    return {int(m.group(1)) for k in keys if (m := re.match(pattern, k))}
