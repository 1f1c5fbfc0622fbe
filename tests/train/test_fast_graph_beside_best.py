"""Deploy-ready by default: ``atrous train`` writes the int8 fast graph beside best.pt, and
predict runs it (verified by the checkpoint's hash and the recorded agreement) with no export."""

from __future__ import annotations

import hashlib
import json
import shutil

import cv2
import numpy as np
import pytest
import torch
from _tiny import tiny_config
from typer.testing import CliRunner

from atrous.card import read_card
from atrous.checkpoint import load_checkpoint, save_checkpoint
from atrous.cli import app
from atrous.data import build_dataset
from atrous.fastpath.deploy import MIN_AGREEMENT, fast_graph_paths, open_fastest, verified_graph
from atrous.segmenter import Segmenter
from atrous.train import train

runner = CliRunner()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny training run (2 steps of 8 synthetic 48 px images) with the int8 graph."""
    out = tmp_path_factory.mktemp("deploy") / "run"
    config = tiny_config(fast_graph="int8")
    result = train(config, out, progress=False)
    return result, config


def _sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_training_writes_a_graph_naming_its_checkpoint(trained):
    result, _ = trained
    best = result.best_checkpoint
    assert result.fast_graph is not None and result.fast_graph.is_file()
    assert result.fast_graph in fast_graph_paths(best)
    facts = read_card(result.fast_graph).fast_path
    assert facts.precision == "int8"
    assert facts.source_sha256 == _sha256(best)
    assert facts.images_checked == 2  # the run's validation images
    assert MIN_AGREEMENT <= facts.agreement <= 1.0
    assert verified_graph(best) == result.fast_graph


def test_predict_runs_the_int8_graph_and_says_so(trained, tmp_path):
    result, config = trained
    image = tmp_path / "scene.png"
    sample = build_dataset(config.data, "val")[0]
    cv2.imwrite(str(image), sample.image[..., ::-1])
    args = ["predict", str(result.best_checkpoint), str(image), "--out", str(tmp_path / "out")]
    fast = runner.invoke(app, [*args, "--json"])
    assert fast.exit_code == 0, fast.output
    assert json.loads(fast.stdout)["path"] == "fast-int8"
    plain = runner.invoke(app, args)
    assert "path: fast-int8" in plain.output and "int8 fast graph" in plain.output
    forced = runner.invoke(app, [*args, "--engine", "torch", "--json"])
    assert forced.exit_code == 0, forced.output
    assert json.loads(forced.stdout)["path"] == "torch"


def test_engine_fast_is_the_same_verified_path(trained):
    result, _ = trained
    assert Segmenter.from_file(result.best_checkpoint, engine="fast").path_used == "fast-int8"


def test_fast_masks_agree_with_torch(trained):
    result, config = trained
    fast = Segmenter.from_file(result.best_checkpoint).at_full_resolution()
    plain = Segmenter.from_file(result.best_checkpoint, engine="torch")
    assert fast.path_used == "fast-int8" and plain.path_used == "torch"
    assert fast.label_stride == 1
    val = build_dataset(config.data, "val")
    agree = [(fast.predict(s.image).mask == plain.predict(s.image).mask).mean() for s in val]
    assert float(np.mean(agree)) >= 0.9


def test_a_changed_checkpoint_falls_back_to_the_cached_fp32_graph(trained, tmp_path):
    result, _ = trained
    moved = tmp_path / "best.pt"
    for path in [result.best_checkpoint, *result.fast_graph.parent.glob("best.fast.*")]:
        shutil.copy(path, tmp_path / path.name)
    assert verified_graph(moved) is not None  # the copy is the same checkpoint
    model, card = load_checkpoint(moved)
    with torch.no_grad():
        next(model.parameters()).add_(0.01)
    save_checkpoint(moved, model, card)
    assert verified_graph(moved) is None
    fastest = open_fastest(moved)
    assert fastest.name == "fast-fp32"
    assert "built from another checkpoint" in fastest.description
