"""``AtrousConv2d``: a Conv2d whose dilated depthwise training pass runs undilated, d x d times.

PyTorch's CPU backward of a dilated depthwise convolution is 3-4x slower than the undilated one
(MobileNetV2 dm0.5 at output stride 16 on 192 px crops: its three dilated layers took 11% of a
training step; forward and backward of one, 16 x 480 x 12 x 12, 28 ms dilated and 9 ms split).
A stride-1 'same' convolution with dilation d equals the undilated convolution applied to each of
the d x d phase images (the pixels whose row and column are fixed modulo d), interleaved back:
the identity behind TF's SpaceToBatchND. The result is exact. Only training (autograd on) on
channels-last input takes that route (for NCHW it gains little and loses at large dilations);
evaluation and export see a plain dilated Conv2d, and the parameters and state_dict keys are
Conv2d's own.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["AtrousConv2d", "phase_split_conv2d"]

# Larger inputs stay dilated: past ~32 MB of float32 (about this CPU's L3 cache) the phase copies
# cost as much as they save (8 x 960 x 33 x 33: even; 8 x 576 x 65 x 65: 479 -> 530 ms a pass;
# benchmarks/atrous_conv.py).
_SPLIT_MAX_ELEMENTS = 1 << 23


def phase_split_conv2d(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, dilation: int, groups: int
) -> torch.Tensor:
    """The 'same' stride-1 convolution of a channels-last ``x`` with ``dilation``, computed as
    one undilated convolution over the d x d phase images stacked in the batch (channels-last out).
    """
    n, c, h, w = x.shape
    d = dilation
    pad_h, pad_w = -h % d, -w % d
    nhwc = x.permute(0, 2, 3, 1)  # a view: x is channels-last
    if pad_h or pad_w:  # zeros past the edge are what the 'same' padding reads there anyway
        nhwc = F.pad(nhwc, (0, 0, 0, pad_w, 0, pad_h))
    hp, wp = (h + pad_h) // d, (w + pad_w) // d
    phases = nhwc.reshape(n, hp, d, wp, d, c).permute(0, 2, 4, 1, 3, 5)
    phases = phases.reshape(n * d * d, hp, wp, c).permute(0, 3, 1, 2)
    padding = (weight.shape[-2] // 2, weight.shape[-1] // 2)
    y = F.conv2d(phases, weight, bias, 1, padding, 1, groups)
    co = y.shape[1]
    y = y.permute(0, 2, 3, 1).reshape(n, d, d, hp, wp, co).permute(0, 3, 1, 4, 2, 5)
    y = y.reshape(n, hp * d, wp * d, co)
    if pad_h or pad_w:
        y = y[:, :h, :w].contiguous()
    return y.permute(0, 3, 1, 2)


class AtrousConv2d(nn.Conv2d):
    """nn.Conv2d that trains a dilated depthwise 'same' convolution by phase splitting."""

    def _splits(self) -> bool:
        """Whether this layer is a dilated depthwise stride-1 'same' convolution (the slow case;
        dense dilated convolutions have a fast oneDNN backward and stay as they are)."""
        kh, kw = self.kernel_size
        dh, dw = self.dilation
        return (
            dh == dw > 1
            and self.stride == (1, 1)
            and self.groups == self.in_channels
            and self.padding_mode == "zeros"
            and kh % 2 == 1
            and kw % 2 == 1
            and self.padding == (dh * (kh - 1) // 2, dw * (kw - 1) // 2)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (
            self.training
            and torch.is_grad_enabled()
            and x.dim() == 4
            and x.numel() <= _SPLIT_MAX_ELEMENTS
            and x.is_contiguous(memory_format=torch.channels_last)
            and self._splits()
        ):
            return phase_split_conv2d(x, self.weight, self.bias, self.dilation[0], self.groups)
        return super().forward(x)
