"""Bias correction (Nagel et al., 2019): cancel the mean output shift that int8 weights cause.

Rounding weights to int8 shifts each output channel's expectation by ``sum(eps * E[x])`` with
``eps = Q(W) - W``. Measuring ``E[x]`` per input channel on calibration batches and subtracting
that shift from the bias removes the systematic part of the error, which matters most for
depthwise layers with few weights per channel.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

import numpy as np
import torch
from torch import nn

__all__ = ["fake_quantize_weight", "bias_correct"]

Granularity = Literal["per-channel", "per-tensor"]


def fake_quantize_weight(weight: torch.Tensor, granularity: Granularity) -> torch.Tensor:
    """Round a conv weight to symmetric int8 (as ONNX Runtime does) and back to float."""
    if granularity == "per-channel":
        amax = weight.abs().flatten(1).amax(dim=1).reshape(-1, *[1] * (weight.dim() - 1))
    else:
        amax = weight.abs().max()
    scale = (amax / 127.0).clamp_min(1e-12)
    return torch.clamp(torch.round(weight / scale), -127, 127) * scale


@torch.no_grad()
def bias_correct(
    model: nn.Module, batches: Iterable[np.ndarray | torch.Tensor], granularity: Granularity
) -> int:
    """Correct the bias of every Conv2d in place for int8 weight rounding; return layers changed.

    Use on a BN-folded model (after equalisation, which changes the weights).
    """
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    sums: dict[nn.Conv2d, torch.Tensor] = {}
    counts: dict[nn.Conv2d, int] = {}

    def hook(module: nn.Conv2d, inputs: tuple[torch.Tensor, ...]) -> None:
        x = inputs[0]
        sums[module] = sums.get(module, 0) + x.sum(dim=(0, 2, 3)).double()
        counts[module] = counts.get(module, 0) + x.numel() // x.shape[1]

    handles = [c.register_forward_pre_hook(hook) for c in convs]
    model.eval()
    try:
        for batch in batches:
            model(torch.as_tensor(batch))
    finally:
        for h in handles:
            h.remove()
    for conv in convs:
        if conv not in sums:
            continue
        mean_in = (sums[conv] / counts[conv]).float()
        eps = fake_quantize_weight(conv.weight, granularity) - conv.weight
        if conv.groups == 1:
            shift = torch.einsum("oikl,i->o", eps, mean_in)
        else:
            per_group = conv.in_channels // conv.groups
            outs_per_group = conv.out_channels // conv.groups
            grouped_mean = mean_in.reshape(conv.groups, per_group)
            grouped_mean = grouped_mean.repeat_interleave(outs_per_group, dim=0)
            shift = (eps.sum(dim=(2, 3)) * grouped_mean).sum(dim=1)
        if conv.bias is None:
            conv.bias = nn.Parameter(torch.zeros(conv.out_channels))
        conv.bias.sub_(shift)
    return len(sums)
