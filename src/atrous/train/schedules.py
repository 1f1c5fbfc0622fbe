"""Learning-rate schedules: polynomial decay (power 0.9, as in DeepLab) after a linear warmup."""

from __future__ import annotations

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

__all__ = ["PolyWarmup", "poly_scheduler"]


class PolyWarmup:
    """LR factor at step i: linear ramp to 1 over ``warmup_iters``, then (1 - t)^power decay.

    A picklable callable, so the scheduler's state_dict (and a resumed run) keeps it.
    """

    def __init__(self, total_iters: int, power: float = 0.9, warmup_iters: int = 0) -> None:
        self.total_iters = max(1, total_iters)
        self.power = power
        self.warmup_iters = min(warmup_iters, self.total_iters - 1)

    def __call__(self, step: int) -> float:
        if step < self.warmup_iters:
            return (step + 1) / (self.warmup_iters + 1)
        span = self.total_iters - self.warmup_iters
        progress = min(1.0, (step - self.warmup_iters) / span)
        return (1.0 - progress) ** self.power


def poly_scheduler(
    optimizer: Optimizer, total_iters: int, power: float = 0.9, warmup_iters: int = 0
) -> LambdaLR:
    """A per-iteration LambdaLR following :class:`PolyWarmup`."""
    return LambdaLR(optimizer, PolyWarmup(total_iters, power, warmup_iters))
