"""``atrous quantize`` / ``atrous prune`` end to end on a small checkpoint (64-pixel input)."""

from __future__ import annotations

import json

import onnx
import pytest
from typer.testing import CliRunner

from atrous.cli import app
from atrous.errors import InputError
from atrous.export.onnx import read_onnx_card

runner = CliRunner()


def test_quantize_cli_writes_int8_and_prints_table(small_checkpoint, tmp_path):
    out = tmp_path / "small.int8.onnx"
    args = [
        "quantize", str(small_checkpoint), "--calib", "synthetic", "--num", "4",
        "--limit", "3", "--size", "64", "--out", str(out), "--json", "--runs", "3",
    ]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    names = [row["variant"] for row in data["variants"]]
    assert names == ["float", "int8 per-channel"]
    fp32, int8 = data["variants"]
    assert int8["size_mb"] < 0.4 * fp32["size_mb"]
    assert fp32["gmacs"] == int8["gmacs"] > 0
    assert 0 <= int8["miou"] <= 1 and int8["latency_ms"] > 0
    assert any(n.op_type == "QuantizeLinear" for n in onnx.load(str(out)).graph.node)
    card = read_onnx_card(out)
    assert card.preprocessing.size == 64
    assert data["settings"]["bias_correction"] is True


def test_quantize_cli_litert_writes_float_and_int8_tflite(small_checkpoint, tmp_path):
    from atrous.runtimes.litert_engine import litert_available

    if not litert_available():
        pytest.skip("ai-edge-litert is not installed")
    from ai_edge_litert.interpreter import Interpreter

    out = tmp_path / "small.int8.tflite"
    args = [
        "quantize", str(small_checkpoint), "--calib", "synthetic", "--engine", "litert",
        "--num", "4", "--limit", "3", "--out", str(out), "--json", "--runs", "3",
    ]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    fp32, int8 = data["variants"]
    assert [fp32["variant"], int8["variant"]] == ["float (.tflite)", "int8 per-channel (.tflite)"]
    assert data["size"] == 64 and int8["size_mb"] < 0.4 * fp32["size_mb"]
    assert 0 <= int8["miou"] <= 1 and int8["latency_ms"] > 0
    interpreter = Interpreter(model_path=str(out))
    weights = [t for t in interpreter.get_tensor_details() if len(t["shape"]) == 4
               and t["quantization_parameters"]["scales"].size]  # fmt: skip
    assert interpreter.get_input_details()[0]["dtype"].__name__ == "int8"
    assert weights and all(t["quantization_parameters"]["scales"].size == t["shape"][
        t["quantization_parameters"]["quantized_dimension"]] for t in weights)  # fmt: skip
    refused = runner.invoke(app, [*args, "--granularity", "per-tensor"])
    assert isinstance(refused.exception, InputError) and "litert" in str(refused.exception)


def test_quantize_cli_bad_granularity_is_one_line_error(small_checkpoint, tmp_path):
    out = tmp_path / "x.onnx"
    args = ["quantize", str(small_checkpoint), "--calib", "synthetic", "--num", "2",
            "--granularity", "per-row", "--out", str(out)]  # fmt: skip
    result = runner.invoke(app, args)
    assert isinstance(result.exception, InputError)
    assert "granularity" in str(result.exception) and "\n" not in str(result.exception)
    assert not out.exists()


@pytest.mark.slow
def test_prune_cli_exports_smaller_model(small_checkpoint, tmp_path):
    out = tmp_path / "pruned.onnx"
    args = ["prune", str(small_checkpoint), "--ratio", "0.5", "--size", "64", "--out", str(out),
            "--json", "--runs", "3"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    fp32, pruned = data["variants"]
    assert pruned["gmacs"] <= 0.5 * fp32["gmacs"]
    assert pruned["size_mb"] < fp32["size_mb"]
    assert read_onnx_card(out).num_classes == 5


@pytest.mark.slow
def test_train_qat_from_checkpoint_writes_int8(small_checkpoint, tmp_path):
    args = [
        "train", "demo", "data.train_size=8", "data.val_size=2", "data.image_size=64",
        "data.crop_size=64", "model.input_size=64", "train.batch_size=4",
        "--qat", "--from", str(small_checkpoint), "--steps", "2", "--out", str(tmp_path),
    ]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    int8 = tmp_path / "model.int8.onnx"
    assert any(n.op_type == "QuantizeLinear" for n in onnx.load(str(int8)).graph.node)
    assert (tmp_path / "qat_float.onnx").is_file()
    assert "QAT int8" in result.output
    missing = runner.invoke(app, ["train", "demo", "--qat", "--out", str(tmp_path / "x")])
    assert isinstance(missing.exception, InputError)
