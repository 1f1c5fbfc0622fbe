"""Export: ONNX (and other formats) -> engine round trips, metadata, parity and the CLI."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from typer.testing import CliRunner

from atrous.cli import app
from atrous.errors import ModelError
from atrous.export import check_parity, export_model, export_onnx, parity_sizes
from atrous.export.onnx import read_onnx_card
from atrous.export.parity import diversify, sample_batch, synthetic_image
from atrous.runtimes import TorchEngine, load_engine

SIZES = [(65, 97), (129, 129)]


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
    # simplified: no leftover shape arithmetic around constants
    assert not any(n.op_type == "Constant" for n in proto.graph.node)


def test_with_argmax_returns_uint8_labels_equal_to_torch_argmax(tiny, tmp_path):
    _, model, card = tiny
    path = export_onnx(
        model, card, tmp_path / "labels.onnx", with_argmax=True, sample_size=(65, 97)
    )
    engine, loaded = load_engine(path, threads=2)
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


def test_export_cli_prints_parity_table_and_writes_file(tiny, tmp_path):
    path, _, _ = tiny
    out = tmp_path / "cli.onnx"
    result = CliRunner().invoke(
        app, ["export", str(path), "--format", "onnx", "--size", "65x97", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "argmax agreement" in result.output and "65x97" in result.output
    assert out.is_file() and read_onnx_card(out) is not None


def test_export_cli_rejects_unknown_format(tiny, tmp_path):
    path, _, _ = tiny
    result = CliRunner().invoke(app, ["export", str(path), "--format", "caffe"])
    assert result.exit_code != 0
    assert "unknown export format 'caffe'" in str(result.exception) + result.output
