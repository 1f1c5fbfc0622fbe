"""A tiny experiment for training tests: 8 images of 48 px, one step per epoch."""

from __future__ import annotations

import io
from typing import Any

from rich.console import Console

from atrous.config import ExperimentConfig, parse_config


def tiny_config(**train: Any) -> ExperimentConfig:
    """The tiny experiment with ``train`` overrides."""
    data = {
        "model": {"name": "deeplabv3_mnv2_dm05_os16", "input_size": 48},
        "data": {
            "kind": "synthetic",
            "image_size": 48,
            "crop_size": 48,
            "train_size": 8,
            "val_size": 2,
        },
        "train": {
            "epochs": 2,
            "batch_size": 8,
            "lr": 0.02,
            "threads": 2,
            "tensorboard": False,
            "fast_graph": "none",
            **train,
        },
    }
    return parse_config(ExperimentConfig, data)


def recording_console() -> tuple[Console, io.StringIO]:
    """A console whose output the test reads back (plain text, wide lines)."""
    text = io.StringIO()
    return Console(file=text, width=400, color_system=None, highlight=False), text
