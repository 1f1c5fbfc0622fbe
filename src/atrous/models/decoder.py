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
    """Resize feature maps to a given size: 'bilinear' (``align_corners`` False by default),
    'nearest', or 'transposed', a learned depthwise ConvTranspose2d by ``factor`` initialised to
    bilinear.

    The transposed output covers ``factor`` x the input positions; it is cropped to the target
    (the features of a size-n input are ceil(n / stride) positions, so it always covers the
    network's own input size) and resized bilinearly only for a larger ``size``. Bilinear and
    nearest have no parameters, so they add no state_dict keys. Depthwise: the bilinear
    initialisation is per channel, and a dense one would cost ``channels`` times more.
    """

    def __init__(
        self,
        mode: str = "bilinear",
        channels: int = 0,
        factor: int = 2,
        align_corners: bool = False,
    ) -> None:
        super().__init__()
        self.mode = mode
        self.align_corners = align_corners
        if mode == "transposed":
            self.deconv = nn.ConvTranspose2d(
                channels, channels, 2 * factor, factor, factor // 2, groups=channels, bias=False
            )
            with torch.no_grad():
                self.deconv.weight.copy_(bilinear_kernel(factor).expand_as(self.deconv.weight))
        elif mode not in ("bilinear", "nearest"):
            raise ValueError(f"upsampling must be bilinear, nearest or transposed, got {mode!r}")

    def forward(self, x: torch.Tensor, size: tuple[int, int] | torch.Size) -> torch.Tensor:
        if self.mode == "transposed":
            x = self.deconv(x)
            if x.shape[-2] >= size[0] and x.shape[-1] >= size[1]:
                return x[..., : size[0], : size[1]]
        if self.mode == "nearest":
            return F.interpolate(x, size=size, mode="nearest")
        return F.interpolate(x, size=size, mode="bilinear", align_corners=self.align_corners)


class Decoder(nn.Module):
    """Reduce low-level features (1x1), concat with the upsampled head output, 3x3 convs.

    Args:
        head_channels: channels of the head's output.
        low_channels: channels of the backbone's stride-4 features.
        low_reduced: channels the low-level features are reduced to (48 in the paper).
        channels: channels of the two refining convolutions.
        separable: depthwise-separable refining convolutions.
        activation: the non-linearity of every convolution (``atrous.models.aspp.ACTIVATIONS``).
        upsampling: how the head's output is resized (see :class:`Upsample`).
        factor: the head's stride over the low-level features' (for a transposed upsampling).
        convs: number of refining 3x3 convolutions (2 in the paper, 1 in smp).
        depthwise_bn: BN + activation after the depthwise convs of separable ones too.
        align_corners: corner-aligned bilinear upsampling (smp).
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
        convs: int = 2,
        depthwise_bn: bool = True,
        align_corners: bool = False,
    ) -> None:
        super().__init__()
        act = activation
        self.reduce = ConvBNReLU(low_channels, low_reduced, 1, activation=act)
        widths = [head_channels + low_reduced] + [channels] * convs
        refine: list[nn.Module] = []
        for cin, cout in zip(widths[:-1], widths[1:], strict=True):
            if separable:
                refine.append(SeparableConvBNReLU(cin, cout, 1, act, depthwise_bn))
            else:
                refine.append(ConvBNReLU(cin, cout, 3, activation=act))
        self.refine = nn.Sequential(*refine)
        self.upsample = Upsample(upsampling, head_channels, factor, align_corners)
        self.out_channels = channels

    def forward(self, x: torch.Tensor, low: torch.Tensor) -> torch.Tensor:
        x = self.upsample(x, low.shape[-2:])
        return self.refine(torch.cat([x, self.reduce(low)], dim=1))
