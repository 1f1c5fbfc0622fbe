"""Structured channel pruning to a target multiply-add ratio.

Prunable channels are the ones internal to a conv chain: the outputs of a dense convolution that
pass through depthwise convolutions (same channels, ``groups`` shrinks with them) into the next
dense convolution, e.g. the hidden channels of a MobileNetV2 inverted residual. Channels that
reach a residual add, a concatenation or the classifier are never touched, so shapes stay valid
and the result is a genuinely smaller dense network (it exports and runs like any other).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from atrous.cost import measure_cost
from atrous.errors import ModelError
from atrous.quantize._chains import Unit, find_chains, is_depthwise
from atrous.quantize.capped_relu import CappedReLU

__all__ = [
    "PruneGroup",
    "PruneResult",
    "prunable_groups",
    "select_channels",
    "channel_importance",
    "prune",
    "prune_to_fraction",
]

Method = Literal["bn", "l1"]


@dataclass
class PruneGroup:
    """Channels made by ``producer``, carried through ``depthwise`` units, read by ``consumer``."""

    producer: Unit
    depthwise: list[Unit]
    consumer: Unit

    @property
    def channels(self) -> int:
        return self.producer.conv.out_channels


@dataclass
class PruneResult:
    """The pruned model with its measured cost before and after."""

    model: nn.Module
    keep_fraction: float
    params: tuple[int, int]
    macs: tuple[int, int]

    @property
    def macs_ratio(self) -> float:
        return self.macs[1] / self.macs[0]


def prunable_groups(model: nn.Module) -> list[PruneGroup]:
    """Every dense -> depthwise* -> dense run in the model's conv chains."""
    groups = []
    for chain in find_chains(model):
        for i, unit in enumerate(chain):
            if unit.conv.groups != 1:
                continue
            j = i + 1
            while j < len(chain) and is_depthwise(chain[j].conv):
                j += 1
            if j < len(chain) and chain[j].conv.groups == 1:
                consumer = chain[j]
                if consumer.conv.in_channels == unit.conv.out_channels:
                    groups.append(PruneGroup(unit, chain[i + 1 : j], consumer))
    return groups


def channel_importance(group: PruneGroup, method: Method = "bn") -> torch.Tensor:
    """Score per channel: |BN scale| feeding the consumer ('bn') or L1 of the producer ('l1')."""
    if method == "l1":
        return group.producer.conv.weight.detach().abs().flatten(1).sum(dim=1)
    last = group.depthwise[-1] if group.depthwise else group.producer
    if last.bn is None:
        raise ModelError("prune: method 'bn' needs BatchNorm layers; use method 'l1'")
    return last.bn.weight.detach().abs()


def _take(tensor: torch.Tensor, idx: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """Entries ``idx`` of ``tensor`` along ``dim``; an index past the end gives zeros (a new,
    padded channel)."""
    extra = int(idx.max()) + 1 - tensor.shape[dim] if len(idx) else 0
    if extra > 0:
        shape = list(tensor.shape)
        shape[dim] = extra
        tensor = torch.cat([tensor, tensor.new_zeros(shape)], dim)
    return tensor.index_select(dim, idx)


def _slice_conv(conv: nn.Conv2d, out_idx: torch.Tensor | None, in_idx: torch.Tensor | None):
    """A conv of the same class with the given output / input channels (past the end: zeros)."""
    w = conv.weight.detach()
    depthwise = is_depthwise(conv)
    if out_idx is not None:
        w = _take(w, out_idx)
    if in_idx is not None and not depthwise:
        w = _take(w, in_idx, dim=1)
    cout = w.shape[0]
    cin = cout if depthwise else w.shape[1] * conv.groups
    new = type(conv)(  # an AtrousConv2d stays one
        cin,
        cout,
        conv.kernel_size,
        conv.stride,
        conv.padding,
        conv.dilation,
        groups=cout if depthwise else conv.groups,
        bias=conv.bias is not None,
        padding_mode=conv.padding_mode,
    )
    new.weight.data.copy_(w)
    if conv.bias is not None:
        bias = conv.bias.detach()
        new.bias.data.copy_(_take(bias, out_idx) if out_idx is not None else bias)
    return new


def _slice_bn(bn: nn.BatchNorm2d, idx: torch.Tensor) -> nn.BatchNorm2d:
    """A new BatchNorm2d with channels ``idx``; a padded channel maps zero to zero (variance 1)."""
    new = nn.BatchNorm2d(len(idx), eps=bn.eps, momentum=bn.momentum)
    for name in ("weight", "bias", "running_mean", "running_var"):
        getattr(new, name).data.copy_(_take(getattr(bn, name).detach(), idx))
    new.running_var.data[idx >= bn.num_features] = 1.0
    return new


def _keep_unit_outputs(unit: Unit, idx: torch.Tensor, depthwise: bool) -> None:
    unit.parent._modules[unit.conv_name] = _slice_conv(unit.conv, idx, idx if depthwise else None)
    if unit.bn is not None:
        unit.parent._modules[unit.bn_name] = _slice_bn(unit.bn, idx)
    if isinstance(unit.act, CappedReLU):  # per-channel caps (after equalisation) follow too
        caps = unit.act.cap.detach().flatten()
        padded = torch.where(idx < len(caps), _take(caps, idx), 6.0)  # zero in, zero out
        unit.parent._modules[unit.act_name] = CappedReLU(padded)


@torch.no_grad()
def select_channels(group: PruneGroup, idx: torch.Tensor) -> None:
    """Keep channels ``idx`` of one group, in place; an index past the group's channels adds a
    zero channel (its filters, bias and the consumer's weights on it are all zero)."""
    _keep_unit_outputs(group.producer, idx, depthwise=False)
    for unit in group.depthwise:
        _keep_unit_outputs(unit, idx, depthwise=True)
    consumer = group.consumer
    consumer.parent._modules[consumer.conv_name] = _slice_conv(consumer.conv, None, idx)


def _keep_count(channels: int, fraction: float, divisor: int) -> int:
    """Channels to keep: a multiple of ``divisor`` (SIMD-friendly), at least one block."""
    kept = max(divisor, int(round(channels * fraction / divisor)) * divisor)
    return min(channels, kept)


def prune_to_fraction(
    model: nn.Module, fraction: float, method: Method = "bn", divisor: int = 8
) -> nn.Module:
    """A copy of ``model`` keeping the ``fraction`` most important channels of every group."""
    pruned = copy.deepcopy(model)
    for group in prunable_groups(pruned):
        keep = _keep_count(group.channels, fraction, divisor)
        if keep < group.channels:
            order = torch.argsort(channel_importance(group, method), descending=True)
            select_channels(group, torch.sort(order[:keep]).values)
    return pruned


def prune(
    model: nn.Module,
    target_macs_ratio: float = 0.5,
    *,
    method: Method = "bn",
    input_size: tuple[int, int] = (129, 129),
    divisor: int = 8,
) -> PruneResult:
    """Prune every prunable group by one common fraction, the largest that meets the MAC target.

    The fraction is found by bisection on the measured multiply-adds (atrous.cost), so
    the result is at or just under ``target_macs_ratio`` of the original. The input model is
    left untouched; the pruned copy is in eval mode and needs fine-tuning to recover accuracy.
    """
    if not 0 < target_macs_ratio <= 1:
        raise ModelError(f"prune: target ratio must be in (0, 1], got {target_macs_ratio}")
    model = model.eval()
    if not prunable_groups(model):
        raise ModelError("prune: the model has no prunable dense -> depthwise -> dense chains")
    base = measure_cost(model, input_size)
    lo, hi, best = 0.0, 1.0, None
    for _ in range(8):
        mid = (lo + hi) / 2
        candidate = prune_to_fraction(model, mid, method, divisor)
        macs = measure_cost(candidate, input_size).macs
        if macs <= target_macs_ratio * base.macs:
            lo, best = mid, (candidate, macs)
        else:
            hi = mid
    if best is None:
        raise ModelError(
            f"prune: cannot reach {target_macs_ratio:.0%} of the multiply-adds by pruning "
            "internal channels alone"
        )
    pruned, macs = best
    after = measure_cost(pruned, input_size)
    return PruneResult(pruned.eval(), lo, (base.params, after.params), (base.macs, after.macs))
