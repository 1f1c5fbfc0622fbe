"""Parameters and multiply-adds measured on the built graph with forward hooks.

Only convolutions (transposed ones too) and linear layers are counted (one multiply-add per
weight per output position), as the published DeepLab figures do; BatchNorm, activations and
resizes are not.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import torch
from torch import nn

__all__ = ["Cost", "count_parameters", "measure_cost"]


@dataclass
class Cost:
    """Measured cost of one forward pass at ``input_size`` (H, W)."""

    input_size: tuple[int, int]
    params: int
    macs: int
    by_stage: dict[str, int] = field(default_factory=dict)

    @property
    def gmacs(self) -> float:
        """Multiply-adds in units of 1e9."""
        return self.macs / 1e9


def count_parameters(model: nn.Module) -> int:
    """Number of parameters (trainable or not), excluding buffers."""
    return sum(p.numel() for p in model.parameters())


def _stage_label(name: str, reduction: int) -> str:
    """Group a module: backbone layers by the stride they run at, other parts by component."""
    top = name.split(".", 1)[0]
    return f"backbone@1/{reduction}" if top == "backbone" else top


@torch.no_grad()
def measure_cost(model: nn.Module, input_size: tuple[int, int] = (513, 513)) -> Cost:
    """Run one forward pass at ``input_size`` and count multiply-adds per stage."""
    height, width = input_size
    by_stage: dict[str, int] = defaultdict(int)
    handles = []

    def hook(name: str):
        def fn(module: nn.Module, inputs, output: torch.Tensor) -> None:
            if isinstance(module, nn.Conv2d):
                per_out = module.in_channels // module.groups * module.kernel_size[0]
                per_out *= module.kernel_size[1]
                macs = output.numel() * per_out
                reduction = max(1, round(height / output.shape[-2]))
                reduction = 1 << (reduction.bit_length() - 1)
            elif isinstance(module, nn.ConvTranspose2d):  # one per weight per input position
                macs = inputs[0].numel() * module.weight[0].numel()
                reduction = 1
            else:
                macs = output.numel() * module.in_features
                reduction = 1
            by_stage[_stage_label(name, reduction)] += int(macs)

        return fn

    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d | nn.ConvTranspose2d | nn.Linear):
            handles.append(module.register_forward_hook(hook(name)))
    was_training = model.training
    model.eval()
    try:
        model(torch.zeros(1, 3, height, width))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return Cost((height, width), count_parameters(model), sum(by_stage.values()), dict(by_stage))
