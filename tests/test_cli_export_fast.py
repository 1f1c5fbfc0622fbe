"""``atrous export --fast``: the fast graph from the CLI, its agreement table, int8 needs data."""

from __future__ import annotations

import json

import numpy as np
from typer.testing import CliRunner

from atrous.cli import app
from atrous.errors import ModelError
from atrous.export.onnx import read_onnx_card
from atrous.fastpath import export_fast
from atrous.segmenter import Segmenter

runner = CliRunner()


def test_export_fast_fp32_from_cli(tmp_path):
    out = tmp_path / "fast.onnx"
    result = runner.invoke(
        app,
        ["export", "deeplabv3_mnv2_dm05_os16", "--fast", "--label-stride", "1", "-o", str(out)]
        + ["--json"],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["precision"] == "fp32" and report["label_stride"] == 1
    assert report["agreement_with_float"] > 0.99  # fp32 at full resolution: the same network
    card = read_onnx_card(out)
    assert card.output == "logits" and card.preprocessing.layout == "NCHW"  # planar pixels in
    mask = Segmenter.from_file(out, engine="onnxruntime").predict(np.zeros((40, 50, 3), np.uint8))
    assert mask.mask.shape == (40, 50)


def test_int8_fast_export_needs_calibration(tmp_path):
    result = runner.invoke(
        app, ["export", "deeplabv3_mnv2_dm05_os16", "--fast", "--precision", "int8"]
    )
    assert isinstance(result.exception, ModelError)  # main() prints it as one line, exit 2
    assert "calibration" in str(result.exception) and "\n" not in str(result.exception)


def test_export_fast_int8_reports_agreement(tmp_path):
    images = [np.random.default_rng(i).integers(0, 255, (48, 48, 3), np.uint8) for i in range(6)]
    result = export_fast(
        "deeplabv3_mnv2_dm05_os16",
        tmp_path / "f8.onnx",
        precision="int8",
        calibration=images,
        num=4,
        threads=1,
    )
    assert result.images_checked == 2 and 0.0 <= result.agreement <= 1.0
    assert read_onnx_card(result.path).fast_path.precision == "int8"


def test_export_fast_int8_openvino_from_cli(tmp_path):
    out = tmp_path / "fast.xml"
    result = runner.invoke(
        app,
        ["export", "deeplabv3_mnv2_dm05_os16", "--fast", "--calib", "synthetic", "--num", "4"]
        + ["-o", str(out), "--json"],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["engine"] == "openvino" and report["precision"] == "int8"
    assert report["images_checked"] == 8 and out.with_suffix(".bin").exists()
    seg = Segmenter.from_file(out, engine="auto", threads=1)
    assert seg.engine.describe()["engine"] == "openvino"
    assert seg.card.fast_path.engine == "openvino"
    assert seg.predict(np.zeros((40, 50, 3), np.uint8)).mask.shape == (40, 50)


def test_export_fast_refuses_fp32_openvino_and_other_suffixes(tmp_path):
    cases = (("f.xml", "is int8; write fp32 as .onnx"), ("f.tflite", ".xml"), ("F.ONNX", ".xml"))
    for name, message in cases:
        result = runner.invoke(
            app, ["export", "deeplabv3_mnv2_dm05_os16", "--fast", "-o", str(tmp_path / name)]
        )
        assert isinstance(result.exception, ModelError), result.output
        assert message in str(result.exception) and "\n" not in str(result.exception)
        assert not list(tmp_path.iterdir())
