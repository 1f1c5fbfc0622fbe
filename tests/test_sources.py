"""The one resolver: zoo name, checkpoint, exported file or foreign file, decided once."""

from __future__ import annotations

import pytest

from atrous.errors import ModelError
from atrous.export import export_onnx
from atrous.runtimes import TorchEngine
from atrous.sources import classify, load_engine, load_source, source_card

NAME = "deeplabv3_mnv2_dm05_os16"


def test_each_kind_of_source_is_told_apart(tiny_checkpoint, tmp_path):
    path, model, card = tiny_checkpoint
    onnx_path = export_onnx(model, card, tmp_path / "m.onnx", sample_size=(65, 65))
    assert classify(NAME).kind == "zoo"
    assert classify(path).kind == "checkpoint"
    assert classify(str(onnx_path)).kind == "exported"
    assert classify(tmp_path / "missing.pt").kind == "checkpoint"  # its error comes on reading
    with pytest.raises(ModelError, match="no such file or zoo model"):
        classify("no_such_model")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ModelError, match="unsupported model file type '.txt'"):
        classify(tmp_path / "notes.txt")
    with pytest.raises(ModelError, match="a folder"):
        classify(tmp_path)


def test_models_cards_and_engines_come_from_the_same_resolution(tiny_checkpoint, tmp_path):
    path, model, card = tiny_checkpoint
    net, loaded = load_source(path)
    assert loaded == card and not net.training
    assert source_card(path) == card and source_card(NAME).name == NAME
    engine, engine_card = load_engine(path)
    assert isinstance(engine, TorchEngine) and engine_card == card
    onnx_path = export_onnx(model, card, tmp_path / "m.onnx", sample_size=(65, 65))
    assert source_card(onnx_path).export.format == "onnx"
    assert source_card(onnx_path, ["classes=[a, b, c, d, e]"]).classes[0] == "a"
    with pytest.raises(ModelError, match="expected a checkpoint"):
        load_source(onnx_path)
    with pytest.raises(ModelError, match="a zoo name runs on the torch engine"):
        load_engine(NAME, "onnxruntime")
