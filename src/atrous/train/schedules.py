"""Learning-rate schedules: polynomial decay (power 0.9, as in DeepLab) after a linear warmup.

The horizon can move while a run trains (a time budget shortens it, a resume with more epochs
lengthens it): :meth:`PolyScheduler.set_total_iters` is the one way to move it.
"""

from __future__ import annotations

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

__all__ = ["PolyWarmup", "PolyScheduler", "poly_scheduler"]


class PolyWarmup:
    """LR factor at step i: linear ramp to 1 over ``warmup_iters``, then (1 - t)^power decay.

    A picklable callable, so the scheduler's state_dict (and a resumed run) keeps it. The
    factor is 0 from ``total_iters`` on; a horizon at or inside the warmup shortens the warmup
    to end one step before it (never a division by zero).
    """

    def __init__(self, total_iters: int, power: float = 0.9, warmup_iters: int = 0) -> None:
        self.total_iters = max(1, total_iters)
        self.power = power
        self.warmup_iters = min(warmup_iters, self.total_iters - 1)

    def replan(self, total_iters: int) -> None:
        """Move the horizon to ``total_iters`` (at least 1); the warmup length is kept."""
        self.total_iters = max(1, int(total_iters))

    def __call__(self, step: int) -> float:
        warmup = max(0, min(self.warmup_iters, self.total_iters - 1))
        if step < warmup:
            return (step + 1) / (warmup + 1)
        if step >= self.total_iters:
            return 0.0
        progress = (step - warmup) / (self.total_iters - warmup)  # denominator >= 1
        return (1.0 - progress) ** self.power


class PolyScheduler(LambdaLR):
    """A per-iteration LambdaLR following :class:`PolyWarmup`, with a movable horizon."""

    def __init__(
        self, optimizer: Optimizer, total_iters: int, power: float = 0.9, warmup_iters: int = 0
    ) -> None:
        super().__init__(optimizer, PolyWarmup(total_iters, power, warmup_iters))

    @property
    def poly(self) -> PolyWarmup:
        """The schedule's factor function (shared by every parameter group)."""
        return self.lr_lambdas[0]  # type: ignore[return-value]

    @property
    def total_iters(self) -> int:
        """The iteration at which the LR reaches 0."""
        return self.poly.total_iters

    def set_total_iters(self, total_iters: int) -> None:
        """Re-plan the decay to end at ``total_iters``; the current LR follows at once."""
        for fn in self.lr_lambdas:
            fn.replan(total_iters)  # type: ignore[attr-defined]
        step = self.last_epoch
        for group, fn, base in zip(
            self.optimizer.param_groups, self.lr_lambdas, self.base_lrs, strict=True
        ):
            group["lr"] = base * fn(step)
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]


def poly_scheduler(
    optimizer: Optimizer, total_iters: int, power: float = 0.9, warmup_iters: int = 0
) -> PolyScheduler:
    """A per-iteration :class:`PolyScheduler`."""
    return PolyScheduler(optimizer, total_iters, power, warmup_iters)
