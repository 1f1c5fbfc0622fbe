"""Zero channels that round a network's internal widths up to what CPU kernels handle fastest.

SIMD convolution kernels process channels in blocks (16 on AVX-512 for ONNX Runtime's NCHWc
float and NHWC int8 kernels); a width that is not a multiple of the block runs its remainder on
a slower path. MobileNetV2 at width 0.5 has 72 hidden channels at 1/4 resolution: there ONNX
Runtime's int8 depthwise convolution took 1.43 ms at 513x513, and 0.65 ms with 80 channels
(BENCHMARKS.md, the fast CPU path). Padding is the inverse of pruning and uses the same groups
(dense -> depthwise* -> dense runs whose channels reach no residual add or concatenation): the
added channels have zero filters, zero bias and zero weight in the consumer, so the network
computes exactly the same function.
"""

from __future__ import annotations

import torch
from torch import nn

from atrous.quantize.prune import prunable_groups, select_channels

__all__ = ["pad_channels", "CHANNEL_MULTIPLE"]

CHANNEL_MULTIPLE = 16  # the channel block of AVX-512 kernels (and two of AVX2's)


def pad_channels(model: nn.Module, multiple: int = CHANNEL_MULTIPLE) -> int:
    """Widen every internal channel group of ``model`` to a multiple of ``multiple`` with zero
    channels, in place; the outputs are unchanged. Returns how many groups were widened."""
    if multiple < 1:
        raise ValueError(f"multiple must be at least 1, got {multiple}")
    widened = 0
    for group in prunable_groups(model):
        channels = group.channels
        padded = -(-channels // multiple) * multiple
        if padded > channels:
            select_channels(group, torch.arange(padded))
            widened += 1
    return widened
