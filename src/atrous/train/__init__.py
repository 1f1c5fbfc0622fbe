"""Training: the loop, the run, the time budget, losses, LR schedules, checkpoints and torchrun
multi-process support."""

from atrous.train.api import train
from atrous.train.budget import TimeBudget
from atrous.train.loop import NonFiniteLoss, TrainResult, fit, train_one_epoch, validate
from atrous.train.run import Run, build_run

__all__ = [
    "NonFiniteLoss",
    "Run",
    "TimeBudget",
    "TrainResult",
    "build_run",
    "fit",
    "train",
    "train_one_epoch",
    "validate",
]
