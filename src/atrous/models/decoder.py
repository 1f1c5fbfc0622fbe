"""The DeepLabV3+ decoder: refine the head's output with stride-4 low-level features; and the
resize (bilinear, nearest or learned) that the decoder and the final logits use."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from atrous.models.aspp import ConvBNReLU, SeparableConvBNReLU

__all__ = ["Decoder", "Upsample", "bilinear_kernel"]


def bilinear_kernel(factor: int) -> torch.Tensor:
    """The 2f x 2f kernel with which a stride-f transposed convolution (padding f/2) computes
    bilinear upsampling with align_corners=False away from the border (FCN's initialisation)."""
    size = 2 * factor
    center = factor - 0.5
    ramp = 1 - (torch.arange(size, dtype=torch.float32) - center).abs() / factor
    return ramp[:, None] * ramp[None, :]


class Upsample(nn.Module):
    """Resize feature maps to a given size: 'bilinear' (align_corners=False), 'nearest',
    'bilinear_align_corners' (TF DeepLab's resize, imported .tflite files) or 'transposed', a
    learned depthwise ConvTranspose2d by ``factor`` initialised to bilinear.

    The transposed output covers ``factor`` x the input positions; it is cropped to the target
    (the features of a size-n input are ceil(n / stride) positions, so it always covers the
    network's own input size) and resized bilinearly only for a larger ``size``. Bilinear and
    nearest have no parameters, so they add no state_dict keys. Depthwise: the bilinear
    initialisation is per channel, and a dense one would cost ``channels`` times more.
    """

    def __init__(self, mode: str = "bilinear", channels: int = 0, factor: int = 2) -> None:
        super().__init__()
        self.mode = mode
        if mode == "transposed":
            self.deconv = nn.ConvTranspose2d(
                channels, channels, 2 * factor, factor, factor // 2, groups=channels, bias=False
            )
            with torch.no_grad():
                self.deconv.weight.copy_(bilinear_kernel(factor).expand_as(self.deconv.weight))
        elif mode not in ("bilinear", "nearest", "bilinear_align_corners"):
            raise ValueError(
                "upsampling must be bilinear, nearest, transposed or bilinear_align_corners, "
                f"got {mode!r}"
            )

    def forward(self, x: torch.Tensor, size: tuple[int, int] | torch.Size) -> torch.Tensor:
        if self.mode == "transposed":
            x = self.deconv(x)
            if x.shape[-2] >= size[0] and x.shape[-1] >= size[1]:
                return x[..., : size[0], : size[1]]
        if self.mode == "nearest":
            return F.interpolate(x, size=size, mode="nearest")
        corners = self.mode == "bilinear_align_corners"  # TF DeepLab's resize
        return F.interpolate(x, size=size, mode="bilinear", align_corners=corners)


class Decoder(nn.Module):
    """Reduce low-level features (1x1), concat with the upsampled head output, two 3x3 convs.

    Args:
        head_channels: channels of the head's output.
        low_channels: channels of the backbone's stride-4 features.
        low_reduced: channels the low-level features are reduced to (48 in the paper).
        channels: channels of the two refining convolutions.
        separable: depthwise-separable refining convolutions.
        activation: the non-linearity of every convolution (``atrous.models.aspp.ACTIVATIONS``).
        upsampling: how the head's output is resized (see :class:`Upsample`).
        factor: the head's stride over the low-level features' (for a transposed upsampling).
    """

    def __init__(
        self,
        head_channels: int,
        low_channels: int,
        low_reduced: int = 48,
        channels: int = 256,
        separable: bool = False,
        activation: str = "relu",
        upsampling: str = "bilinear",
        factor: int = 4,
    ) -> None:
        super().__init__()
        act = activation
        self.reduce = ConvBNReLU(low_channels, low_reduced, 1, activation=act)
        cin = head_channels + low_reduced
        if separable:
            self.refine = nn.Sequential(
                SeparableConvBNReLU(cin, channels, activation=act),
                SeparableConvBNReLU(channels, channels, activation=act),
            )
        else:
            self.refine = nn.Sequential(
                ConvBNReLU(cin, channels, 3, activation=act),
                ConvBNReLU(channels, channels, 3, activation=act),
            )
        self.upsample = Upsample(upsampling, head_channels, factor)
        self.out_channels = channels

    def forward(self, x: torch.Tensor, low: torch.Tensor) -> torch.Tensor:
        x = self.upsample(x, low.shape[-2:])
        return self.refine(torch.cat([x, self.reduce(low)], dim=1))
