"""``atrous export --format ncnn`` (pnnx) and the ncnn engine: parity with PyTorch, the card
beside the files, the Engine protocol, --engine auto, and the benchmark side by side."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from atrous.cli import app
from atrous.errors import ConfigError, ModelError
from atrous.export import export_model
from atrous.export.parity import diversify, sample_batch
from atrous.runtimes import Engine, TorchEngine, model_file_mb
from atrous.sources import load_engine

pytest.importorskip("pnnx", reason="ncnn export needs pnnx (pip install 'atrous[ncnn]')")
pytest.importorskip("ncnn", reason="the ncnn engine needs ncnn (pip install 'atrous[ncnn]')")

pytestmark = pytest.mark.usefixtures("private_engine_cache")

SIDE = 65


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A dm0.35 5-class checkpoint at 65 px whose labels vary, with its PyTorch model."""
    from atrous.checkpoint import save_checkpoint
    from atrous.models.zoo import default_card, get_model

    name = "deeplabv3_mnv2_dm05_os16"
    card = default_card(name, num_classes=5, width_mult=0.35)
    card = card.model_copy(
        update={"preprocessing": card.preprocessing.model_copy(update={"size": SIDE})}
    )
    model = diversify(get_model(name, num_classes=5, width_mult=0.35).eval(), card)
    folder = tmp_path_factory.mktemp("ncnn")
    return save_checkpoint(folder / "tiny.pt", model, card), model


@pytest.fixture(scope="module")
def exported(tiny):
    """The ncnn export of ``tiny``, -o naming a folder that does not exist yet."""
    checkpoint, _ = tiny
    return export_model(checkpoint, "ncnn", checkpoint.parent / "out", threads=1)


def test_export_writes_param_bin_and_the_card_beside_them(exported, tiny):
    path = exported.path
    assert path == tiny[0].parent / "out" / "tiny.param"
    assert path.with_suffix(".bin").stat().st_size > 10_000
    card = json.loads(path.with_name("tiny.param.card.json").read_text())
    assert card["export"]["format"] == "ncnn" and card["output"] == "logits"
    assert model_file_mb(path) * 1e6 > path.with_suffix(".bin").stat().st_size
    assert not list(path.parent.glob(".*"))  # no staging left behind


def test_export_parity_rows_pass_at_network_and_original_sizes(exported):
    rows = exported.parity.rows
    assert {r.scope for r in rows} == {"network", "original"}
    assert all(r.engine == "ncnn" and r.agreement >= 0.999 for r in rows)
    assert max(r.classes_seen for r in rows) >= 3  # the labels vary: agreement means something


def test_engine_matches_pytorch_at_a_size_it_was_not_traced_at(exported, tiny):
    engine, card = load_engine(exported.path, "ncnn", threads=1)
    assert isinstance(engine, Engine) and engine.name == "ncnn" and engine.threads == 1
    assert engine.describe()["precision"] == "fp32"
    assert card.preprocessing.size == SIDE
    batch = np.concatenate([sample_batch(card, (49, 83), seed=s) for s in (3, 4)])
    ref = TorchEngine(tiny[1], 1).run(batch)
    got = engine.run(batch)
    assert got.shape == ref.shape == (2, 5, 49, 83)
    assert np.abs(got - ref).max() < 1e-3 * np.abs(ref).max()
    assert (got.argmax(1) == ref.argmax(1)).mean() >= 0.999


def test_auto_opens_a_param_file_on_ncnn_and_other_engines_are_refused(exported):
    engine, _ = load_engine(exported.path, "auto", threads=1)
    assert engine.name == "ncnn"
    with pytest.raises(ModelError, match=r"runs on ncnn, not 'onnxruntime'"):
        load_engine(exported.path, "onnxruntime")


def test_int8_and_in_graph_argmax_are_refused_plainly(tiny, tmp_path):
    with pytest.raises(ConfigError, match="ncnn2table and ncnn2int8"):
        export_model(tiny[0], "ncnn", tmp_path / "q.param", precision="int8")
    with pytest.raises(ConfigError, match="no --with-argmax"):
        export_model(tiny[0], "ncnn", tmp_path / "a.param", with_argmax=True)


def test_missing_weights_are_one_line(exported, tmp_path):
    lonely = tmp_path / "lonely.param"
    lonely.write_bytes(exported.path.read_bytes())
    with pytest.raises(ModelError, match=r"lonely.param: its weights lonely.bin are missing"):
        load_engine(lonely, "ncnn")


def test_benchmark_runs_ncnn_beside_an_onnx_engine(exported, tiny, tmp_path):
    from atrous.checkpoint import load_checkpoint
    from atrous.export.onnx import export_onnx

    model, card = load_checkpoint(tiny[0])
    onnx_path = export_onnx(model, card, tmp_path / "tiny.onnx", sample_size=(SIDE, SIDE))
    args = ["benchmark", str(exported.path), str(onnx_path), "--runs", "2", "--warmup", "1"]
    res = CliRunner().invoke(app, [*args, "--threads", "1", "--network-only", "--json"])
    assert res.exit_code == 0, res.output
    records = json.loads(res.stdout)["records"]
    engines = {r["label"].split(":")[0]: r["engine"] for r in records}  # auto: the fastest
    assert engines["tiny.param"] == "ncnn"
    assert engines["tiny.onnx"] in ("onnxruntime", "openvino")
    assert all(r["median_ms"] > 0 for r in records)
