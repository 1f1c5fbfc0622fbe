"""BatchNorm folding: merge every Conv2d -> BatchNorm2d pair into one biased convolution.

Folding is exact in eval mode and is the first step before equalisation and quantization, whose
per-channel ranges must be those of the weights the runtime will actually execute.
"""

from __future__ import annotations

from collections.abc import Iterator

from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

__all__ = ["fold_batchnorm", "conv_bn_pairs"]


def conv_bn_pairs(model: nn.Module) -> Iterator[tuple[nn.Module, str, str]]:
    """Yield (parent, conv attribute, bn attribute) for each Conv2d directly followed by its BN.

    Relies on registration order: every atrous block registers a BN right after the conv it
    normalises (Sequentials, ResNet ``convN``/``bnN``, Xception ``depthwise``/``bn_depth``); the
    float-equality tests over the zoo guard that assumption.
    """
    for parent in model.modules():
        names = list(parent._modules)
        for a, b in zip(names, names[1:], strict=False):
            conv, bn = parent._modules[a], parent._modules[b]
            if (
                isinstance(conv, nn.Conv2d)
                and isinstance(bn, nn.BatchNorm2d)
                and bn.num_features == conv.out_channels
            ):
                yield parent, a, b


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """Fold BatchNorm into the preceding convolutions in place; the BN becomes ``nn.Identity``.

    The model is put in eval mode (folding uses the running statistics). Returns ``model``.
    """
    model.eval()
    for parent, conv_name, bn_name in list(conv_bn_pairs(model)):
        conv, bn = parent._modules[conv_name], parent._modules[bn_name]
        parent._modules[conv_name] = fuse_conv_bn_eval(conv, bn)
        parent._modules[bn_name] = nn.Identity()
    return model
