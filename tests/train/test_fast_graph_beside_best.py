"""Deploy-ready by default: ``atrous train`` writes the int8 fast graph beside best.pt, and
predict runs it (verified by the checkpoint's hash and the recorded float-vs-int8 mIoU on the
labelled held-out images, else pixel agreement) with no export."""

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

from atrous.card import FastPathFacts, read_card
from atrous.checkpoint import load_checkpoint, save_checkpoint
from atrous.cli import app
from atrous.data import build_dataset
from atrous.evaluate import evaluate
from atrous.fastpath.deploy import (
    _with_facts,
    fast_graph_paths,
    fast_path_problem,
    open_fastest,
    verified_graph,
)
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
    assert facts.label_stride == 1  # trained for 48 px inputs: full-resolution labels
    assert facts.source_sha256 == _sha256(best)
    assert facts.images_checked == 2  # the run's validation images
    assert 0.0 <= facts.agreement <= 1.0
    assert facts.float_miou - facts.fast_miou <= 0.005  # within 0.5 points: verified
    assert verified_graph(best) == result.fast_graph


def test_recorded_mious_are_the_evaluators(trained):
    """The card's two mIoUs are what ``atrous evaluate`` scores on the validation split: the
    float model on PyTorch, the graph with labels at full resolution."""
    result, config = trained
    facts = read_card(result.fast_graph).fast_path
    val = build_dataset(config.data, "val")
    plain = Segmenter.from_file(result.best_checkpoint, engine="torch")
    fast = Segmenter.from_file(result.best_checkpoint).at_full_resolution()
    assert fast.path_used == "fast-int8"
    float_miou = evaluate(plain, val, progress=False).miou
    fast_miou = evaluate(fast, val, progress=False).miou
    assert facts.float_miou == pytest.approx(float_miou, abs=1e-6)
    assert facts.fast_miou == pytest.approx(fast_miou, abs=1e-6)


@pytest.mark.parametrize(
    ("float_miou", "fast_miou", "agreement", "used"),
    [
        (0.80, 0.796, 0.97, True),  # -0.4 points: used although 3% of pixels flip
        (0.80, 0.81, 0.95, True),  # int8 scores higher
        (0.80, 0.794, 0.999, False),  # -0.6 points: refused however well pixels agree
        (None, None, 0.995, True),  # unlabelled check: pixel agreement decides
        (None, None, 0.97, False),
        (None, None, None, False),  # nothing measured
    ],
)
def test_the_decision_is_the_mIoU_drop_when_labelled(float_miou, fast_miou, agreement, used):
    facts = FastPathFacts(
        agreement=agreement, images_checked=8, float_miou=float_miou, fast_miou=fast_miou
    )
    problem = fast_path_problem(facts)
    assert (problem == "") == used
    if float_miou is not None and not used:
        assert "mIoU points" in problem and "8 held-out images" in problem


def test_a_graph_losing_too_much_mIoU_is_refused(trained, tmp_path):
    """The same checkpoint with a card recording a 2-point drop: not used, and said why;
    the same graph recording a 0.3-point drop: used, the drop in its description."""
    result, _ = trained
    shutil.copy(result.best_checkpoint, tmp_path / "best.pt")
    graph = result.fast_graph
    base = read_card(graph).fast_path
    for drop, used in ((0.02, False), (0.003, True)):
        facts = base.model_copy(update={"float_miou": 0.9, "fast_miou": 0.9 - drop})
        _with_facts(graph, tmp_path / graph.name, facts)
        fastest = open_fastest(tmp_path / "best.pt")
        assert (verified_graph(tmp_path / "best.pt") is not None) == used
        if used:
            assert fastest.name == "fast-int8" and "-0.30 mIoU points" in fastest.description
        else:
            assert fastest.name == "fast-fp32"
            assert "loses 2.00 mIoU points" in fastest.description


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
