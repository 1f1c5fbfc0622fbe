"""Runtimes: ONNX Runtime engine settings, load_engine for exported files, Segmenter on them."""

from __future__ import annotations

import numpy as np
import pytest

from atrous.errors import ModelError
from atrous.export import export_onnx
from atrous.export.parity import diversify, synthetic_image
from atrous.runtimes import TorchEngine, load_engine
from atrous.segmenter import Segmenter


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    from atrous.models.zoo import default_card, get_model

    card = default_card("deeplabv3_mnv2_dm05_os16", num_classes=3)
    model = diversify(get_model("deeplabv3_mnv2_dm05_os16", num_classes=3), card, seed=1)
    card.preprocessing = card.preprocessing.model_copy(update={"size": 97})
    path = export_onnx(model, card, tmp_path_factory.mktemp("rt") / "m.onnx", sample_size=(65, 97))
    return path, model, card


def test_ort_engine_uses_requested_threads_sequentially(exported):
    from atrous.runtimes.onnxruntime_engine import OrtEngine

    engine = OrtEngine(exported[0], threads=2)
    options = engine.session.get_session_options()
    assert options.intra_op_num_threads == 2 and options.inter_op_num_threads == 1
    assert engine.describe()["threads"] == 2 and engine.describe()["engine"] == "onnxruntime"


def test_segmenter_on_onnx_gives_the_torch_mask(exported):
    path, model, card = exported
    image = synthetic_image(70, 90, seed=4)
    onnx_seg = Segmenter.from_file(path, engine="onnxruntime", threads=2)
    torch_seg = Segmenter(TorchEngine(model, 2), card)
    a, b = onnx_seg.predict(image), torch_seg.predict(image)
    assert a.mask.shape == (70, 90)
    assert len(np.unique(b.mask)) >= 2
    assert (a.mask == b.mask).mean() >= 0.999


def test_load_engine_refuses_wrong_engine_and_broken_files(exported, tmp_path):
    with pytest.raises(ModelError, match="runs on"):
        load_engine(exported[0], "torch")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not onnx at all")
    with pytest.raises(ModelError, match="bad.onnx: ONNX Runtime cannot load it"):
        load_engine(bad, "onnxruntime")


def test_uint8_cast_rounds_and_clips():
    from atrous.runtimes.onnxruntime_engine import cast_input

    out = cast_input(np.array([-3.0, 0.4, 0.6, 254.7, 300.0], np.float32), np.uint8)
    assert out.dtype == np.uint8 and out.tolist() == [0, 0, 1, 255, 255]
