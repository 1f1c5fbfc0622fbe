"""Atrous Spatial Pyramid Pooling (DeepLabV3) and its image-pooling-only variant.

The image-pooling branch averages globally and broadcasts back, so it exports to ONNX with
dynamic input sizes (an AdaptiveAvgPool to a fixed size above 1x1 does not).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from atrous.models.atrous_conv import AtrousConv2d

__all__ = [
    "ACTIVATIONS",
    "ASPP",
    "ConvBNReLU",
    "SeparableConvBNReLU",
    "ImagePooling",
    "PooledBiasASPP",
    "make_activation",
]

# ModelConfig.activation -> module (no parameters, so the choice never changes state_dict keys)
ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "relu6": nn.ReLU6,
    "hardswish": nn.Hardswish,
}


def make_activation(name: str = "relu") -> nn.Module:
    """The in-place activation module called ``name`` (a key of ``ACTIVATIONS``)."""
    return ACTIVATIONS[name](inplace=True)


class ConvBNReLU(nn.Sequential):
    """Conv (no bias) -> BatchNorm -> ReLU (or ``activation``) with 'same' padding for any
    dilation."""

    def __init__(
        self, cin: int, cout: int, kernel: int = 1, dilation: int = 1, activation: str = "relu"
    ) -> None:
        padding = (kernel - 1) // 2 * dilation
        super().__init__(
            nn.Conv2d(cin, cout, kernel, padding=padding, dilation=dilation, bias=False),
            nn.BatchNorm2d(cout),
            make_activation(activation),
        )


class SeparableConvBNReLU(nn.Sequential):
    """Depthwise 3x3 (dilated) -> BN -> ReLU -> pointwise 1x1 -> BN -> ReLU (DeepLabV3+);
    without ``depthwise_bn``, depthwise -> pointwise -> BN -> ReLU (smp's SeparableConv2d)."""

    def __init__(
        self,
        cin: int,
        cout: int,
        dilation: int = 1,
        activation: str = "relu",
        depthwise_bn: bool = True,
    ) -> None:
        depthwise = AtrousConv2d(
            cin, cin, 3, padding=dilation, dilation=dilation, groups=cin, bias=False
        )
        after = [nn.BatchNorm2d(cin), make_activation(activation)] if depthwise_bn else []
        super().__init__(
            depthwise,
            *after,
            nn.Conv2d(cin, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
            make_activation(activation),
        )


class ImagePooling(nn.Module):
    """Global average over H, W -> 1x1 conv -> BN -> ReLU -> broadcast back to H x W."""

    def __init__(self, cin: int, cout: int, activation: str = "relu") -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 1, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.relu = make_activation(activation)  # the name predates the activation choice

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # global average pooling (ONNX GlobalAveragePool: any input size, and ONNX Runtime
        # quantizes it, where a ReduceMean would run in float between int8 layers)
        return self.pooled(x).expand(-1, -1, x.shape[2], x.shape[3])

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        """The branch's N x C x 1 x 1 features, before the broadcast."""
        return self.relu(self.bn(self.conv(F.adaptive_avg_pool2d(x, 1))))


class ASPP(nn.Module):
    """ASPP head: 1x1 branch, one 3x3 branch per atrous rate, image pooling; concat -> 1x1 project.

    With no ``atrous_rates`` this is the image-pooling + 1x1 head of TF DeepLab's MobileNetV2
    configuration.

    Args:
        in_channels: channels of the backbone's output features.
        atrous_rates: dilation of each 3x3 branch, already scaled to the output stride.
        channels: channels of every branch and of the projection.
        separable: depthwise-separable 3x3 branches (DeepLabV3+ with Xception).
        dropout: dropout after the projection (training only).
        activation: the non-linearity after every BatchNorm (a key of ``ACTIVATIONS``).
        depthwise_bn: BN + activation after the depthwise convs of separable branches too.
    """

    def __init__(
        self,
        in_channels: int,
        atrous_rates: Sequence[int] = (6, 12, 18),
        channels: int = 256,
        separable: bool = False,
        dropout: float = 0.1,
        activation: str = "relu",
        depthwise_bn: bool = True,
    ) -> None:
        super().__init__()
        act = activation
        branches: list[nn.Module] = [ConvBNReLU(in_channels, channels, 1, activation=act)]
        for rate in atrous_rates:
            if separable:
                branches.append(SeparableConvBNReLU(in_channels, channels, rate, act, depthwise_bn))
            else:
                branches.append(ConvBNReLU(in_channels, channels, 3, rate, act))
        self.branches = nn.ModuleList(branches)
        self.pooling = ImagePooling(in_channels, channels, act)
        self.project = ConvBNReLU(channels * (len(branches) + 1), channels, 1, activation=act)
        self.dropout = nn.Dropout(dropout)
        self.out_channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = [branch(x) for branch in self.branches]
        outs.append(self.pooling(x))
        return self.dropout(self.project(torch.cat(outs, dim=1)))


class PooledBiasASPP(nn.Module):
    """An eval-mode ASPP computing the same function without broadcasting the pooled branch.

    The projection is linear, so its share of the image-pooling features (constant over the
    image) is a per-image bias: project(cat(branches, broadcast(p))) = W_b * branches + W_p * p
    + b. Deployment graphs then skip the H x W broadcast and the concat, and the projection
    reads one branch fewer (half its input channels for the TF MobileNetV2 head, whose only
    other branch is the 1x1). BN after the projection is folded in. Built with
    ``PooledBiasASPP(aspp)`` from an ASPP in eval mode, whose branches it shares; ``aspp`` is
    not modified.
    """

    def __init__(self, aspp: ASPP) -> None:
        super().__init__()
        from torch.nn.utils.fusion import fuse_conv_bn_eval

        if aspp.training:
            raise ValueError("PooledBiasASPP folds BN statistics: put the ASPP in eval mode")
        conv, norm, act = aspp.project[0], aspp.project[1], aspp.project[2]
        if isinstance(norm, nn.BatchNorm2d):
            conv = fuse_conv_bn_eval(conv, norm)
        weight = conv.weight.detach()
        bias = conv.bias.detach() if conv.bias is not None else torch.zeros(weight.shape[0])
        pooled_channels = aspp.pooling.conv.out_channels
        split = weight.shape[1] - pooled_channels
        self.branches, self.pooling, self.act = aspp.branches, aspp.pooling, act
        self.project = nn.Conv2d(split, weight.shape[0], 1)
        self.project_pooled = nn.Conv2d(pooled_channels, weight.shape[0], 1, bias=False)
        with torch.no_grad():
            self.project.weight.copy_(weight[:, :split])
            self.project.bias.copy_(bias)
            self.project_pooled.weight.copy_(weight[:, split:])
        self.out_channels = aspp.out_channels
        self.eval()  # the shared branches already are (checked above)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = [branch(x) for branch in self.branches]
        y = outs[0] if len(outs) == 1 else torch.cat(outs, dim=1)
        return self.act(self.project(y) + self.project_pooled(self.pooling.pooled(x)))
