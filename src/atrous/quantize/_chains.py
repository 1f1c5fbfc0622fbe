"""Find chains of convolutions inside ``nn.Sequential`` containers (shared by equalise and prune).

A *unit* is a Conv2d followed by an optional BatchNorm (or the Identity left by folding) and an
optional piecewise-linear activation. Consecutive units in one sequential container form a chain,
so channel *i* of one unit's output feeds only channel *i* of the next unit's input.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from atrous.quantize.capped_relu import CappedReLU

__all__ = ["Unit", "find_chains", "is_depthwise"]

ACTIVATIONS = (nn.ReLU, nn.ReLU6, CappedReLU)


@dataclass
class Unit:
    """One conv unit; ``parent``/``*_name`` locate modules so they can be replaced in place."""

    parent: nn.Module
    conv_name: str
    bn_name: str | None = None
    act_name: str | None = None

    @property
    def conv(self) -> nn.Conv2d:
        return self.parent._modules[self.conv_name]

    @property
    def bn(self) -> nn.BatchNorm2d | None:
        module = self.parent._modules[self.bn_name] if self.bn_name else None
        return module if isinstance(module, nn.BatchNorm2d) else None

    @property
    def act(self) -> nn.Module | None:
        return self.parent._modules[self.act_name] if self.act_name else None


def is_depthwise(conv: nn.Conv2d) -> bool:
    """True for a depthwise convolution (one filter per input channel, no channel mixing)."""
    return conv.groups == conv.in_channels == conv.out_channels and conv.groups > 1


def _leaves(seq: nn.Sequential) -> list[tuple[nn.Module, str, nn.Module]]:
    """Children of a Sequential in execution order, descending into nested Sequentials."""
    out: list[tuple[nn.Module, str, nn.Module]] = []
    for name, child in seq.named_children():
        if isinstance(child, nn.Sequential):
            out += _leaves(child)
        else:
            out.append((seq, name, child))
    return out


def _units(leaves: list[tuple[nn.Module, str, nn.Module]]) -> list[list[Unit]]:
    """Split a leaf list into maximal runs of consecutive conv units."""
    runs: list[list[Unit]] = [[]]
    i = 0
    while i < len(leaves):
        parent, name, module = leaves[i]
        if not isinstance(module, nn.Conv2d):
            runs.append([])
            i += 1
            continue
        unit = Unit(parent, name)
        i += 1
        if i < len(leaves) and isinstance(leaves[i][2], nn.BatchNorm2d | nn.Identity):
            unit.bn_name = leaves[i][1] if leaves[i][0] is parent else None
            if unit.bn_name is None:
                runs[-1].append(unit)
                runs.append([])
                continue
            i += 1
        if i < len(leaves) and isinstance(leaves[i][2], ACTIVATIONS):
            if leaves[i][0] is not parent:
                runs[-1].append(unit)
                runs.append([])
                continue
            unit.act_name = leaves[i][1]
            i += 1
        runs[-1].append(unit)
    return [r for r in runs if len(r) > 1]


def find_chains(model: nn.Module) -> list[list[Unit]]:
    """All runs of two or more consecutive conv units in the model's outermost Sequentials."""
    inner = {
        id(c)
        for m in model.modules()
        if isinstance(m, nn.Sequential)
        for c in m.children()
        if isinstance(c, nn.Sequential)
    }
    chains: list[list[Unit]] = []
    for module in model.modules():
        if isinstance(module, nn.Sequential) and id(module) not in inner:
            chains += _units(_leaves(module))
    return chains
