"""Cross-layer equalisation (Nagel et al., 2019, "Data-Free Quantization") for conv chains.

Depthwise MobileNets have per-channel weight ranges that differ by orders of magnitude, so one
per-tensor int8 scale wipes out the small channels (pitfall 1). For consecutive convolutions
``W1 -> act -> W2`` with a positively homogeneous activation, scaling output channel *i* of W1 by
``1/s_i`` and input channel *i* of W2 by ``s_i`` leaves the function unchanged; choosing
``s_i = sqrt(r1_i / r2_i)`` makes both ranges equal.

ReLU6 is not positively homogeneous. With ``relu6="cap"`` its clip becomes a per-channel cap
(exact; exports as Relu + Min, which ONNX Runtime leaves in float between int8 layers and so
costs latency). With ``relu6="relu"`` it becomes a plain ReLU, as AIMET does: the network
changes only where activations exceed 6, and int8 kernels fuse it.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from atrous.errors import ModelError
from atrous.quantize._chains import Unit, find_chains, is_depthwise
from atrous.quantize.capped_relu import CappedReLU

__all__ = ["equalize", "equalizable_pairs"]


def _pairable(first: Unit, second: Unit) -> bool:
    c1, c2 = first.conv, second.conv
    return (
        c1.out_channels == c2.in_channels
        and (c2.groups == 1 or is_depthwise(c2))
        and (c1.groups == 1 or is_depthwise(c1))
    )


def equalizable_pairs(model: nn.Module) -> list[tuple[Unit, Unit]]:
    """Consecutive (unit, unit) pairs whose shared channels can be rescaled exactly."""
    pairs = []
    for chain in find_chains(model):
        pairs += [(a, b) for a, b in zip(chain, chain[1:], strict=False) if _pairable(a, b)]
    return pairs


def _out_range(conv: nn.Conv2d) -> torch.Tensor:
    """Max |w| per output channel."""
    return conv.weight.detach().abs().flatten(1).amax(dim=1)


def _in_range(conv: nn.Conv2d) -> torch.Tensor:
    """Max |w| per input channel (per channel for depthwise convolutions)."""
    w = conv.weight.detach().abs()
    if is_depthwise(conv):
        return w.flatten(1).amax(dim=1)
    return w.transpose(0, 1).flatten(1).amax(dim=1)


@torch.no_grad()
def _rescale(first: Unit, second: Unit, scale: torch.Tensor) -> None:
    """Divide first's output channels by ``scale`` and multiply second's inputs by it."""
    c1, c2 = first.conv, second.conv
    c1.weight.div_(scale.reshape(-1, 1, 1, 1))
    if c1.bias is not None:
        c1.bias.div_(scale)
    if is_depthwise(c2):
        c2.weight.mul_(scale.reshape(-1, 1, 1, 1))
    else:
        c2.weight.mul_(scale.reshape(1, -1, 1, 1))
    act = first.act
    if isinstance(act, nn.ReLU6):
        first.parent._modules[first.act_name] = CappedReLU(6.0 / scale)
    elif isinstance(act, CappedReLU):
        act.cap.div_(scale.reshape(1, -1, 1, 1))


@torch.no_grad()
def equalize(
    model: nn.Module,
    iterations: int = 20,
    tolerance: float = 1e-4,
    relu6: Literal["cap", "relu"] = "cap",
) -> int:
    """Equalise every conv pair of a BN-folded model in place; return the number of pairs.

    Pairs that share a depthwise convolution interact, so the sweep repeats until the scales
    stop changing (at most ``iterations`` times). ``relu6`` chooses how ReLU6 between a pair
    is kept (see the module docstring).
    """
    pairs = equalizable_pairs(model)
    if any(u.bn is not None for pair in pairs for u in pair):
        raise ModelError("equalize: fold BatchNorm first (atrous.quantize.fold.fold_batchnorm)")
    if relu6 not in ("cap", "relu"):
        raise ModelError(f"equalize: relu6 must be 'cap' or 'relu', got '{relu6}'")
    if relu6 == "relu":
        for first, _ in pairs:
            if isinstance(first.act, nn.ReLU6):
                first.parent._modules[first.act_name] = nn.ReLU(inplace=True)
    for _ in range(iterations):
        worst = 0.0
        for first, second in pairs:
            r1, r2 = _out_range(first.conv), _in_range(second.conv)
            valid = (r1 > 0) & (r2 > 0)
            scale = torch.where(valid, torch.sqrt(r1 / r2.clamp_min(1e-12)), torch.ones_like(r1))
            _rescale(first, second, scale)
            worst = max(worst, float((scale.log().abs()).max()))
        if worst < tolerance:
            break
    return len(pairs)
