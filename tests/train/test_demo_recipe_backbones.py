"""Every zoo entry on the mobile backbones (ShuffleNetV2, MobileNetV3 with DeepLabV3, V3+ and
LR-ASPP heads) trains in the demo recipe (`atrous train demo model.name=...`), shrunk to a few
64 px scenes: the loss falls from its start and best.pt reloads to the same predictions."""

from __future__ import annotations

import math

import pytest
import torch

from atrous.checkpoint import load_checkpoint
from atrous.demo import demo_config
from atrous.train import train

ENTRIES = [
    "deeplabv3_shufflenetv2_x1_os16",
    "deeplabv3plus_shufflenetv2_x1_os16",
    "deeplabv3_mobilenet_v3_large_tv",
    "lraspp_mobilenet_v3_large_tv",
]
SHRINK = [  # the demo recipe, a few seconds long
    "model.input_size=64",
    "data.image_size=64",
    "data.crop_size=64",
    "data.train_size=16",
    "data.val_size=4",
    "train.epochs=3",
    "train.val_every=3",
    "train.batch_size=8",
    "train.max_minutes=null",
    "train.fast_graph=none",
]


@pytest.mark.parametrize("name", ENTRIES)  # 3-9 s each on 2 cores
def test_the_demo_recipe_trains_the_mobile_backbones(name, tmp_path):
    config = demo_config(tmp_path / "run", [f"model.name={name}", *SHRINK])
    result = train(config, progress=False)
    losses = [epoch["train_loss"] for epoch in result.history]
    assert all(math.isfinite(loss) for loss in losses)
    assert losses[-1] < losses[0], losses
    assert result.best_checkpoint is not None
    model, card = load_checkpoint(result.best_checkpoint)
    assert card.provenance.zoo_name == name
    batch = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model.eval()(batch).argmax(1), result.model.eval()(batch).argmax(1))
