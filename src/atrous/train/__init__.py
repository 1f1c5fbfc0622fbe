"""Training: the loop, losses, LR schedules, checkpoints and torchrun multi-process support."""

from atrous.train.loop import TrainResult, fit, train, train_one_epoch

__all__ = ["TrainResult", "fit", "train", "train_one_epoch"]
