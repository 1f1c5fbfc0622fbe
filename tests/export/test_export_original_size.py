"""Parity at the images' original sizes: whole pipelines (Segmenter-like) on both sides."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from atrous.cli import app
from atrous.export import export_model
from atrous.export.parity import diversify
from atrous.export.pipeline import ORIGINAL_SIZES

pytestmark = pytest.mark.usefixtures("private_engine_cache")


@pytest.fixture(scope="module")
def varied(tmp_path_factory):
    """A dm0.5 model at 129 pixels whose labels vary (so nearest-resized labels lose pixels)."""
    from atrous.checkpoint import save_checkpoint
    from atrous.models.zoo import default_card, get_model

    card = default_card("deeplabv3_mnv2_dm05_os16", num_classes=5)
    pre = card.preprocessing.model_copy(update={"size": 129})
    card = card.model_copy(update={"preprocessing": pre})
    model = diversify(get_model("deeplabv3_mnv2_dm05_os16", num_classes=5).eval(), card)
    return save_checkpoint(tmp_path_factory.mktemp("varied") / "v.pt", model, card)


def test_default_export_masks_agree_at_the_original_size(varied, tmp_path):
    result = export_model(varied, "onnx", tmp_path / "v.onnx", threads=1)
    rows = [r for r in result.parity.rows if r.scope == "original"]
    assert [r.size for r in rows] == ORIGINAL_SIZES
    assert all(r.network_size is not None and r.network_size != r.size for r in rows)
    assert all(r.classes_seen >= 3 and r.agreement >= 0.995 for r in rows)
    assert result.card.output == "logits"


def test_in_graph_argmax_is_reported_lower_at_the_original_size(varied, tmp_path):
    result = export_model(varied, "onnx", tmp_path / "v.onnx", threads=1, with_argmax=True)
    network = [r.agreement for r in result.parity.rows if r.scope == "network"]
    original = [r.agreement for r in result.parity.rows if r.scope == "original"]
    assert min(network) == 1.0 and max(original) < 0.995


def test_cli_table_names_the_image_and_the_network_sizes(varied, tmp_path):
    out = tmp_path / "v.onnx"
    res = CliRunner().invoke(app, ["export", str(varied), "-o", str(out), "--threads", "1"])
    assert res.exit_code == 0, res.output
    h, w = ORIGINAL_SIZES[0]
    assert f"image {h}x{w} (net " in res.output
