"""Export: ONNX (and other formats) -> engine round trips, metadata, parity and the CLI."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch.nn.functional as F
from torch import nn
from typer.testing import CliRunner

from atrous.cli import app
from atrous.errors import ModelError
from atrous.export import check_parity, export_model, export_onnx, parity_sizes
from atrous.export.onnx import read_onnx_card
from atrous.export.parity import diversify, sample_batch, synthetic_image
from atrous.runtimes import TorchEngine, load_engine

SIZES = [(65, 97), (129, 129)]


pytestmark = pytest.mark.usefixtures("private_engine_cache")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A 5-class dm0.5 checkpoint whose argmax varies over the image."""
    from atrous.checkpoint import save_checkpoint
    from atrous.models.zoo import default_card, get_model

    card = default_card("deeplabv3_mnv2_dm05_os16", num_classes=5)
    model = diversify(get_model("deeplabv3_mnv2_dm05_os16", num_classes=5), card)
    path = save_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt", model, card)
    return path, model, card


@pytest.fixture(scope="module")
def tiny_onnx(tiny, tmp_path_factory):
    path, _, _ = tiny
    out = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    return export_model(path, "onnx", out, check_sizes=SIZES, threads=2, with_argmax=False)


def test_onnx_round_trip_matches_torch_at_two_sizes(tiny, tiny_onnx):
    _, model, card = tiny
    assert [r.size for r in tiny_onnx.parity.rows] == SIZES
    assert all(r.classes_seen >= 3 for r in tiny_onnx.parity.rows)  # a check that can fail
    assert tiny_onnx.parity.ok
    engine, loaded = load_engine(tiny_onnx.path, "onnxruntime", threads=2)
    reference = TorchEngine(model, threads=2)
    for i, size in enumerate(SIZES):
        batch = sample_batch(card, size, seed=10 + i)
        ref, got = reference.run(batch), engine.run(batch)
        assert got.shape == ref.shape == (1, 5, *size)
        assert np.abs(ref - got).max() < 1e-4
        assert (ref.argmax(1) == got.argmax(1)).mean() >= 0.999


def test_onnx_carries_the_card_and_dynamic_axes(tiny, tiny_onnx):
    _, _, card = tiny
    stored = read_onnx_card(tiny_onnx.path)
    assert stored is not None
    assert stored.classes == card.classes and stored.model == card.model
    assert stored.preprocessing == card.preprocessing and stored.output == "logits"
    assert stored.provenance.notes["export"]["format"] == "onnx"
    proto = onnx.load(str(tiny_onnx.path))
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in dims] == ["batch", 3, "height", "width"]
    assert proto.graph.output[0].type.tensor_type.shape.dim[1].dim_value == 5
    assert proto.opset_import[0].version == 17
    from atrous.inspection import inspect_model

    info = inspect_model(tiny_onnx.path, (65, 97))
    assert info["origin"] == "onnx file, card from metadata"
    assert info["architecture"]["num_classes"] == 5 and info["card"]["classes"] == card.classes
    # simplified: no leftover shape arithmetic around constants
    assert not any(n.op_type == "Constant" for n in proto.graph.node)


def test_with_argmax_returns_uint8_labels_equal_to_torch_argmax(tiny, tmp_path):
    _, model, card = tiny
    path = export_onnx(
        model, card, tmp_path / "labels.onnx", with_argmax=True, sample_size=(65, 97)
    )
    assert not model.training  # a train-mode wrapper must not flip the model to training
    engine, loaded = load_engine(path, "onnxruntime", threads=2)
    assert loaded.output == "labels"
    batch = sample_batch(card, (129, 129), seed=3)
    labels = engine.run(batch)
    assert labels.dtype == np.uint8 and labels.shape == (1, 129, 129)
    ref = TorchEngine(model, 2).run(batch).argmax(1)
    assert (labels == ref).mean() >= 0.999
    report = check_parity(TorchEngine(model, 2), engine, card, SIZES, candidate_output="labels")
    assert report.ok and all(r.max_abs_diff is None for r in report.rows)


class _Perturbed:
    """Wraps an engine and swaps two classes' logits on the left half: parity must fail."""

    name = "perturbed"
    threads = 1

    def __init__(self, engine):
        self.engine = engine

    def run(self, batch):
        out = self.engine.run(batch).copy()
        half = out.shape[-1] // 2
        out[:, [0, 1], :, :half] = out[:, [1, 0], :, :half]
        return out

    def describe(self):
        return {"engine": self.name}


def test_parity_fails_loudly_under_threshold(tiny):
    _, model, card = tiny
    ref = TorchEngine(model, 2)
    report = check_parity(ref, _Perturbed(ref), card, [(65, 97)])
    assert not report.ok and report.rows[0].agreement < 0.999
    assert report.rows[0].max_abs_diff > 0
    with pytest.raises(ModelError, match="perturbed disagrees with torch at 65x97"):
        report.raise_if_failed("x.onnx")


def test_parity_sizes_are_real_shaped():
    from atrous.models.zoo import default_card

    card = default_card("deeplabv3_mnv2_dm05_os16")
    assert parity_sizes(card) == [(513, 513), (384, 513)]
    assert parity_sizes(card, (129, 129)) == [(129, 129), (96, 129)]


def test_synthetic_images_are_structured_not_noise():
    image = synthetic_image(64, 80, seed=1)
    assert image.shape == (64, 80, 3) and image.dtype == np.uint8
    # neighbouring pixels are strongly correlated, unlike white noise
    a = image[:, :-1].astype(float).ravel()
    b = image[:, 1:].astype(float).ravel()
    assert np.corrcoef(a, b)[0, 1] > 0.8
    assert not np.array_equal(image, synthetic_image(64, 80, seed=2))


def test_openvino_export_via_cli_round_trips_at_two_sizes(tiny, tmp_path):
    path, model, card = tiny
    out = tmp_path / "ir" / "tiny.xml"
    result = CliRunner().invoke(
        app, ["export", str(path), "--format", "openvino", "--size", "65x97", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "argmax agreement" in result.output and "48x97" in result.output
    assert out.is_file() and out.with_suffix(".bin").is_file()
    assert sorted(p.name for p in out.parent.iterdir()) == ["tiny.bin", "tiny.xml"]  # no leftovers
    engine, loaded = load_engine(out, "openvino", threads=2)
    assert engine.name == "openvino" and loaded.classes == card.classes
    assert loaded.provenance.notes["export"]["format"] == "openvino"
    assert loaded.output == "labels"  # the measured default: argmax inside the graph
    reference = TorchEngine(model, threads=2)
    for i, size in enumerate(SIZES):
        batch = sample_batch(card, size, seed=20 + i)
        ref, got = reference.run(batch).argmax(1), engine.run(batch)
        assert got.dtype == np.uint8 and got.shape == ref.shape
        assert (ref == got).mean() >= 0.999


def test_openvino_runs_the_onnx_file_too(tiny, tiny_onnx):
    _, model, card = tiny
    engine, loaded = load_engine(tiny_onnx.path, "openvino", threads=2)
    assert engine.name == "openvino" and loaded.classes == card.classes
    report = check_parity(TorchEngine(model, 2), engine, card, SIZES)
    assert report.ok and max(r.max_abs_diff for r in report.rows) < 1e-4


def test_tflite_export_round_trip(tiny, tmp_path):
    from atrous.export.tflite import tflite_converter
    from atrous.runtimes.litert_engine import litert_available

    if tflite_converter() is None or not litert_available():
        pytest.skip("TFLite export needs the [tflite] extra (litert-torch, ai-edge-litert)")
    path, _, _ = tiny
    result = export_model(
        path, "tflite", tmp_path / "t.tflite", size=(129, 129), threads=2, with_argmax=False
    )
    assert result.parity.ok and [r.size for r in result.parity.rows] == [(129, 129)] * 2
    engine, card = load_engine(result.path, threads=2)
    assert card.preprocessing.resize == "fixed" and card.preprocessing.size == 129
    with pytest.raises(ModelError, match="runs only at"):
        engine.run(np.zeros((1, 3, 65, 97), np.float32))


def test_tflite_export_without_the_extra_says_how_to_get_it(tiny, tmp_path, monkeypatch):
    from atrous.export import tflite

    monkeypatch.setattr(tflite, "tflite_converter", lambda: None)
    with pytest.raises(ModelError, match=r"pip install 'atrous\[tflite\]'"):
        export_model(tiny[0], "tflite", tmp_path / "t.tflite", size=(129, 129))
    assert not (tmp_path / "t.tflite").exists()


def test_export_cli_rejects_unknown_format(tiny, tmp_path):
    path, _, _ = tiny
    result = CliRunner().invoke(app, ["export", str(path), "--format", "caffe"])
    assert result.exit_code != 0
    assert "unknown export format 'caffe'" in str(result.exception) + result.output


# -- lints --------------------------------------------------------------------------------------


class _Upsample(nn.Module):
    def __init__(self, mode: str, align_corners: bool | None) -> None:
        super().__init__()
        self.mode, self.align_corners = mode, align_corners

    def forward(self, x):
        return F.interpolate(x, scale_factor=2, mode=self.mode, align_corners=self.align_corners)


class _Toy(nn.Module):
    """A dilated conv, an align_corners=True upsample, a bicubic one and a half-pixel one."""

    def __init__(self) -> None:
        super().__init__()
        self.context = nn.Conv2d(3, 4, 3, padding=2, dilation=2)
        self.corners = _Upsample("bilinear", True)
        self.smooth = _Upsample("bicubic", False)

    def forward(self, x):
        y = self.smooth(self.corners(self.context(x)))
        return F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False)


def test_lint_names_the_modules_with_dilated_convs_for_tflite_only():
    from atrous.export.lint import lint_model
    from atrous.models.zoo import get_model

    model = get_model("deeplabv3_mnv2_dm05_os16")
    dilated = [w.module for w in lint_model(model, "tflite") if w.code == "tflite-dilated-conv"]
    expected = [
        n for n, m in model.named_modules() if isinstance(m, nn.Conv2d) and m.dilation[0] > 1
    ]
    assert dilated == expected and len(expected) == 3
    assert all(n.startswith("backbone.features.1") for n in dilated)
    assert not [w for w in lint_model(model, "onnx") if w.code == "tflite-dilated-conv"]


def test_lint_finds_resize_conventions_and_modes_by_module():
    from atrous.export.lint import lint_model

    found = {(w.module, w.code) for w in lint_model(_Toy(), "tflite")}
    assert ("context", "tflite-dilated-conv") in found
    assert ("corners", "resize-align-corners") in found
    assert ("smooth", "resize-cubic") in found
    assert ("corners", "resize-mixed-conventions") in found
    onnx_codes = {w.code for w in lint_model(_Toy(), "onnx")}
    assert onnx_codes == {"resize-cubic", "resize-mixed-conventions"}


@pytest.mark.slow
def test_opset_18_uses_the_dynamo_exporter_and_keeps_parity(tiny, tmp_path):
    path, _, _ = tiny
    result = export_model(
        path, "onnx", tmp_path / "o18.onnx", opset=18, check_sizes=SIZES, threads=2
    )
    assert result.parity.ok and result.card.output == "labels"
    assert onnx.load(str(result.path)).opset_import[0].version >= 18
