"""Shared fixtures: small images on disk and a tiny trained-free checkpoint."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

os.environ.setdefault("OMP_NUM_THREADS", "2")
torch.set_num_threads(2)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture
def tiny_checkpoint(tmp_path):
    """A dm0.5 checkpoint with 5 classes and random weights, with its card."""
    from atrous.checkpoint import save_checkpoint
    from atrous.models.zoo import default_card, get_model

    torch.manual_seed(0)
    model = get_model("deeplabv3_mnv2_dm05_os16", num_classes=5).eval()
    card = default_card("deeplabv3_mnv2_dm05_os16", num_classes=5)
    path = save_checkpoint(tmp_path / "tiny.pt", model, card)
    return path, model, card
