"""``train.max_minutes``: a wall-clock budget that re-plans the run (and its LR horizon) to fit.

After each epoch the epochs that still fit are estimated from the run's own pace, so the same
recipe fits the budget on a slower machine instead of overrunning it; the poly LR horizon moves
with the plan. It is a hard limit too: an epoch still running when the budget is spent ends early
and is the last. Under DDP rank 0's clock decides and every rank follows.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from atrous.train.distributed import DistInfo, broadcast_int
from atrous.train.schedules import PolyScheduler

__all__ = ["TimeBudget"]


class TimeBudget:
    """The deadline of one ``train`` call and the re-planning of its epochs and LR horizon.

    Args:
        minutes: the budget, counted from ``start`` (each ``train`` call, resumed or not, gets
            its own).
        epochs: the most epochs the run may plan (``train.epochs``).
        scheduler: the poly schedule whose horizon follows the plan.
        iters_per_epoch: optimizer steps per epoch.
        dist: the process group (rank 0's clock decides).
        clock: seconds, monotonic (a fake one in tests).
    """

    def __init__(
        self,
        minutes: float,
        epochs: int,
        scheduler: PolyScheduler,
        iters_per_epoch: int,
        dist: DistInfo | None = None,
        *,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.minutes = minutes
        self.epochs = epochs
        self.scheduler = scheduler
        self.iters_per_epoch = max(1, iters_per_epoch)
        self.dist = dist or DistInfo()
        self.clock = clock
        self.start = clock()
        self.deadline = self.start + 60.0 * minutes
        self.durations: list[float] = []  # wall seconds of each finished epoch

    def expired(self) -> bool:
        """Past the deadline (the ranks agree: rank 0's clock decides)."""
        return bool(broadcast_int(int(self.clock() > self.deadline), self.dist))

    def record(self, seconds: float) -> None:
        """Note the wall time of a finished epoch (train, validate, save): the run's pace."""
        self.durations.append(seconds)

    def epochs_that_fit(self, done: int, per_epoch: float) -> int:
        """Epochs that fit the budget at ``per_epoch`` seconds each, between ``done`` and
        ``epochs``."""
        left = max(0.0, self.deadline - self.clock())
        fits = done + int(left // max(per_epoch, 1e-6))
        return min(self.epochs, max(done, fits))

    def after_epoch(self, done: int, planned: int, epoch_start: float) -> tuple[int, str | None]:
        """Epochs to plan once ``done`` have finished (the current one began at
        ``epoch_start``); moves the LR horizon to their end. Returns the plan and a line to print
        when it changed."""
        if self.expired():
            new, message = (
                done,
                f"time budget {self.minutes:g} min reached: stopping after this epoch",
            )
        else:
            # the first epoch also pays one-off costs (caches, warm-up): once others are
            # measured, they alone give the pace
            pace = self.durations[1:] or self.durations or [self.clock() - epoch_start]
            per_epoch = sum(pace) / len(pace)
            new = broadcast_int(self.epochs_that_fit(done, per_epoch), self.dist)
            message = None
            if new != planned:
                message = (
                    f"time budget {self.minutes:g} min at {per_epoch:.0f} s per epoch: {new} "
                    f"epochs planned (of {self.epochs}); LR schedule re-planned to match"
                )
        self.scheduler.set_total_iters(new * self.iters_per_epoch)
        return new, message
