"""Run by torchrun in test_train.py: train a few steps, then save this rank's final weights and
what its TrainResult reports (only rank 0 names checkpoints; every rank has rank 0's scores)."""

import json
import os
import sys
from pathlib import Path

import torch

from atrous.config import load_experiment
from atrous.train import train

if __name__ == "__main__":
    config_path, out = sys.argv[1], Path(sys.argv[2])
    rank = int(os.environ["RANK"])
    result = train(load_experiment(config_path), out, progress=False)
    torch.save(result.model.state_dict(), out / f"rank{rank}.pt")
    report = {
        "rank": result.rank,
        "best_checkpoint": None if result.best_checkpoint is None else str(result.best_checkpoint),
        "best_miou": result.best_miou,
        "best_epoch": result.best_epoch,
    }
    (out / f"rank{rank}.json").write_text(json.dumps(report))
