"""Profiler: per-block times account for the measured total; ops land in the right blocks."""

from __future__ import annotations

import json
import tempfile
from dataclasses import asdict

import pytest
import torch
from typer.testing import CliRunner

from atrous.bench.profile import block_labels, block_of, profile_segmenter
from atrous.cli import app
from atrous.export.onnx import export_onnx
from atrous.models import default_card, get_model
from atrous.runtimes import TorchEngine
from atrous.segmenter import Segmenter
from atrous.sources import load_engine

NAME = "deeplabv3_mnv2_dm05_os16"


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    model = get_model(NAME, num_classes=4).eval()
    card = default_card(NAME, num_classes=4)
    card.preprocessing = card.preprocessing.model_copy(update={"pad_multiple": 1})
    return model, card


def test_block_labels_follow_output_stride(tiny):
    model, _ = tiny
    labels = block_labels(model, (129, 129))
    assert labels["backbone.features.0"] == "backbone 1/2"
    assert labels["backbone.features.17"] == "backbone 1/16"  # OS16: the last stages stay dilated
    assert labels["head"] == "head" and labels["classifier"] == "classifier"
    name = "/backbone/features.17/conv/conv.2/Conv_output_0_nchwc"
    assert block_of(name, "Conv", labels) == "backbone 1/16"
    assert block_of("/net/backbone/features.1/conv/Conv", "Conv", labels) == "backbone 1/2"
    assert block_of("/Resize", "Resize", labels) == "upsample"
    assert block_of("ReorderOutput_token_3", "ReorderOutput", labels) == "layout"


def _check_sum(prof):
    assert prof.blocks["decode"] > 0 and prof.blocks["postprocess"] > 0
    assert abs(prof.blocks_sum_ms - prof.total_ms) <= 0.10 * prof.total_ms, prof.blocks
    stages = [b for b in prof.blocks if b.startswith("backbone")]
    assert {"backbone 1/2", "backbone 1/16"} <= set(stages)


def test_torch_profile_blocks_sum_to_total(tiny):
    model, card = tiny
    prof = profile_segmenter(Segmenter(TorchEngine(model, 2), card), size=65, runs=3, warmup=1)
    _check_sum(prof)
    assert prof.blocks["upsample"] > 0 and prof.engine == "torch"
    assert prof.top(3)[0].ms >= prof.top(3)[-1].ms


def test_onnxruntime_profile_blocks_sum_to_total(tiny, tmp_path, monkeypatch):
    model, card = tiny
    path = export_onnx(model, card, tmp_path / "m.onnx")
    engine, loaded = load_engine(path, "onnxruntime", threads=2)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    prof = profile_segmenter(Segmenter(engine, card), model_file=path, size=97, runs=5)
    _check_sum(prof)
    assert prof.engine == "onnxruntime" and "Conv" in prof.by_op_type()
    assert prof.blocks["upsample"] > 0
    assert not any(scratch.iterdir()), "the profiler's trace files are left behind"


def test_openvino_profile_blocks_sum_to_total(tiny, tmp_path):
    """The OpenVINO engine holds an openvino.Model, not a torch one: blocks come from the card."""
    pytest.importorskip("openvino")
    model, card = tiny
    path = export_onnx(model, card, tmp_path / "m.onnx")
    engine, _ = load_engine(path, "openvino", threads=2)
    prof = profile_segmenter(Segmenter(engine, card), model_file=path, size=97, runs=3)
    _check_sum(prof)
    assert prof.engine == "openvino"


def test_profile_cli_writes_json_and_html(tmp_path, tiny_checkpoint, monkeypatch):
    from atrous.bench.peaks import Peaks, peaks_path

    monkeypatch.setenv("ATROUS_CACHE", str(tmp_path / "cache"))  # cached roofs: none measured
    peaks_path(2).parent.mkdir(parents=True)
    peaks_path(2).write_text(json.dumps(asdict(Peaks("test CPU", 2, 10.0, 5.0))))
    path, *_ = tiny_checkpoint
    args = ["profile", str(path), "--size", "65", "--runs", "2"]
    args += ["--json-out", str(tmp_path / "p.json")]
    result = CliRunner().invoke(app, args + ["--report", str(tmp_path / "p.html")])
    assert result.exit_code == 0, result.output
    assert "backbone 1/16" in result.output
    # the block bar chart and the roofline
    assert (tmp_path / "p.html").read_text().count("data:image/png;base64,") == 2
    assert (tmp_path / "roofline.png").is_file()


def test_openvino_profile_reads_channels_last_logits_like_the_engine(tmp_path, monkeypatch):
    """The profiler runs the IR on its own request; its output must reach postprocessing in
    the layout the Segmenter's engine gives (the int8 fast IR returns NHWC logits)."""
    from atrous.export.parity import synthetic_image
    from atrous.fastpath import export_fast_int8

    name = "deeplabv3_mnv2_dm05_os16"
    model, card = get_model(name, num_classes=5).eval(), default_card(name, num_classes=5)
    images = [synthetic_image(64, 64, seed=i) for i in range(3)]
    path = export_fast_int8(model, card, tmp_path / "f.xml", images, num=3)
    seg = Segmenter(*load_engine(path, "openvino", 1))
    assert seg.card.preprocessing.layout == "NHWC"
    seen = []
    postprocess = Segmenter.postprocess

    def spy(self, output, meta, probabilities=False):
        seen.append(output.shape)
        return postprocess(self, output, meta, probabilities)

    monkeypatch.setattr(Segmenter, "postprocess", spy)
    profile = profile_segmenter(seg, model_file=path, size=64, runs=2, warmup=1)
    assert profile.blocks["postprocess"] > 0
    assert seen and all(shape[0] == 5 for shape in seen), seen  # classes first, as from the engine
