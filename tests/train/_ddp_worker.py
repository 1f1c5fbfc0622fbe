"""Run by torchrun in test_train.py: train a few steps, then save this rank's final weights."""

import sys
from pathlib import Path

import torch

from atrous.config import load_experiment
from atrous.train import train

if __name__ == "__main__":
    config_path, out = sys.argv[1], Path(sys.argv[2])
    rank = int(__import__("os").environ["RANK"])
    result = train(load_experiment(config_path), out, progress=False)
    torch.save(result.model.state_dict(), out / f"rank{rank}.pt")
