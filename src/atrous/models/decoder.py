"""The DeepLabV3+ decoder: refine the head's output with stride-4 low-level features."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from atrous.models.aspp import ConvBNReLU, SeparableConvBNReLU

__all__ = ["Decoder"]


class Decoder(nn.Module):
    """Reduce low-level features (1x1), concat with the upsampled head output, two 3x3 convs.

    Args:
        head_channels: channels of the head's output.
        low_channels: channels of the backbone's stride-4 features.
        low_reduced: channels the low-level features are reduced to (48 in the paper).
        channels: channels of the two refining convolutions.
        separable: depthwise-separable refining convolutions.
    """

    def __init__(
        self,
        head_channels: int,
        low_channels: int,
        low_reduced: int = 48,
        channels: int = 256,
        separable: bool = False,
    ) -> None:
        super().__init__()
        self.reduce = ConvBNReLU(low_channels, low_reduced, 1)
        cin = head_channels + low_reduced
        if separable:
            self.refine = nn.Sequential(
                SeparableConvBNReLU(cin, channels), SeparableConvBNReLU(channels, channels)
            )
        else:
            self.refine = nn.Sequential(
                ConvBNReLU(cin, channels, 3), ConvBNReLU(channels, channels, 3)
            )
        self.out_channels = channels

    def forward(self, x: torch.Tensor, low: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=low.shape[-2:], mode="bilinear", align_corners=False)
        return self.refine(torch.cat([x, self.reduce(low)], dim=1))
