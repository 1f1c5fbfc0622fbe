"""``atrous demo`` end to end at a toy size: train -> evaluate -> overlays -> summary."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from atrous.demo import demo_config, run_demo

TOY = [
    "model.input_size=48",
    "data.image_size=48",
    "data.crop_size=48",
    "data.train_size=16",
    "data.val_size=4",
    "train.epochs=1",
    "train.batch_size=8",
    "train.threads=2",
    "train.fast_graph=none",  # the int8 graph is tested in tests/train/test_fast_graph_beside_best
]


def test_demo_config_is_the_shipped_recipe(tmp_path):
    config = demo_config(tmp_path)
    assert config.model.name == "deeplabv3_mnv2_dm05_os16" and config.data.kind == "synthetic"
    assert config.out_dir == str(tmp_path)


def test_demo_writes_summary_overlays_and_curve(tmp_path):
    result = run_demo(tmp_path / "demo", overrides=TOY, overlays=2)
    out = tmp_path / "demo"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["val_miou"] == round(result.evaluation.miou, 4)
    assert summary["val_miou_refined"] == round(result.refined.miou, 4)
    assert result.refined.refine and not result.evaluation.refine
    assert summary["epochs"] == 1 and len(summary["miou_vs_minutes"]) == 1
    assert summary["degenerate"] is result.train.degenerate
    # the path evaluated is the default one for the checkpoint: no graph beside it, so the
    # cached fp32 fast graph, scored on full-resolution labels
    assert summary["path"] == "fast-fp32"
    assert f"| degenerate | {result.train.degenerate} |" in (out / "summary.md").read_text()
    assert len(list((out / "overlays").glob("*.png"))) == 2
    names = ("best.pt", "eval.json", "eval_refined.json", "confusion.png", "miou_vs_minutes.png")
    for name in (*names, "summary.md"):
        assert (out / name).stat().st_size > 0, name
    assert "| circle |" in (out / "summary.md").read_text()
    assert "IoU refined" in (out / "summary.md").read_text()
    panel = np.asarray(Image.open(next((out / "overlays").glob("*.png"))))
    assert panel[:22].mean() > 200 and panel[:22].min() < 100  # the captions' strip: black on white
