"""Runtimes: ONNX Runtime engine settings, load_engine for exported files, Segmenter on them."""

from __future__ import annotations

import numpy as np
import pytest

from atrous.errors import ModelError
from atrous.export import export_onnx
from atrous.export.parity import diversify, synthetic_image
from atrous.runtimes import TorchEngine
from atrous.segmenter import Segmenter
from atrous.sources import load_engine

pytestmark = pytest.mark.usefixtures("private_engine_cache")


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
    # no spinning after a run: idle workers would take the cores from whatever runs next
    assert options.get_session_config_entry("session.force_spinning_stop") == "1"
    assert engine.describe()["threads"] == 2 and engine.describe()["engine"] == "onnxruntime"


def test_ort_engine_pins_repeated_shapes_in_sessions_of_their_own(exported):
    from atrous.runtimes.onnxruntime_engine import OrtEngine

    engine = OrtEngine(exported[0], threads=1, specialize=1)
    rng = np.random.default_rng(0)
    a = rng.standard_normal((1, 3, 64, 96)).astype(np.float32)
    b = rng.standard_normal((1, 3, 32, 48)).astype(np.float32)
    first = engine.run(a)  # first sight: the dynamic session
    assert engine._shapes.fixed == {}
    second = engine.run(a)  # seen again: a session with height and width pinned
    fixed = engine._shapes.fixed[(1, 3, 64, 96)]
    assert [d for d in fixed.get_inputs()[0].shape] == [1, 3, 64, 96]
    np.testing.assert_allclose(second, first, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(engine.run(a), first, rtol=1e-5, atol=1e-5)
    plain = OrtEngine(exported[0], threads=1, specialize=0)
    for _ in range(3):  # the limit is reached: other sizes stay on the dynamic session
        np.testing.assert_allclose(engine.run(b), plain.run(b), rtol=1e-5, atol=1e-5)
    assert list(engine._shapes.fixed) == [(1, 3, 64, 96)] and plain._shapes.fixed == {}


def test_openvino_engine_compiles_repeated_shapes_of_a_dynamic_model(exported):
    from atrous.runtimes.openvino_engine import OpenVinoEngine

    engine = OpenVinoEngine(exported[0], threads=1, specialize=1)
    rng = np.random.default_rng(0)
    a = rng.standard_normal((1, 3, 64, 96)).astype(np.float32)
    b = rng.standard_normal((1, 3, 32, 48)).astype(np.float32)
    first = engine.run(a)  # first sight: the dynamic model
    assert engine._shapes.fixed == {}
    second = engine.run(a)  # seen again: compiled with height and width fixed
    fixed = engine._shapes.fixed[(1, 3, 64, 96)]
    assert list(fixed.get_compiled_model().inputs[0].get_shape()) == [1, 3, 64, 96]
    np.testing.assert_allclose(second, first, rtol=1e-4, atol=1e-4)
    plain = OpenVinoEngine(exported[0], threads=1, specialize=0)
    for _ in range(3):  # the limit is reached: other sizes stay on the dynamic model
        np.testing.assert_allclose(engine.run(b), plain.run(b), rtol=1e-4, atol=1e-4)
    assert list(engine._shapes.fixed) == [(1, 3, 64, 96)] and plain._shapes.fixed == {}
    ref = Segmenter(TorchEngine(exported[1], 1), exported[2]).engine.run(a)
    np.testing.assert_allclose(second, ref, rtol=1e-3, atol=1e-3)


def test_openvino_engine_keeps_a_shape_that_fails_to_compile_dynamic(exported, monkeypatch):
    from atrous.runtimes.openvino_engine import OpenVinoEngine

    engine = OpenVinoEngine(exported[0], threads=1, specialize=2)
    a = np.zeros((1, 3, 64, 96), np.float32)
    calls = []

    def refuse(*args, **kwargs):
        calls.append(args)
        raise RuntimeError("cannot compile")

    monkeypatch.setattr(engine, "_core", type("Core", (), {"compile_model": refuse})())
    for _ in range(4):
        engine.run(a)  # the dynamic model runs it every time
    assert len(calls) == 1 and engine._shapes.fixed == {}  # tried once, not on every run


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
    from atrous.runtimes import cast_input

    out = cast_input(np.array([-3.0, 0.4, 0.6, 254.7, 300.0], np.float32), np.uint8)
    assert out.dtype == np.uint8 and out.tolist() == [0, 0, 1, 255, 255]


# -- foreign models: contract inferred from the signature ---------------------------------------

from foreign_models import conv_params, onnx_model, reference, tflite_model  # noqa: E402


def _needs_litert():
    from atrous.runtimes.litert_engine import litert_available

    if not litert_available():
        pytest.skip("ai-edge-litert is not installed (pip install 'atrous[tflite]')")


def test_foreign_nhwc_uint8_onnx_runs_with_inferred_contract(tmp_path, rng):
    path = onnx_model(tmp_path / "f.onnx", layout="NHWC", dtype="uint8", channels=21, size=33)
    engine, card = load_engine(path, "onnxruntime", threads=2)
    pre = card.preprocessing
    assert (pre.layout, pre.resize, pre.size, pre.pad_multiple) == ("NHWC", "fixed", 33, 1)
    assert card.output == "logits" and card.num_classes == 21 and card.classes[15] == "person"
    assert card.provenance.notes["contract"] == "inferred from the signature"
    image = rng.integers(0, 256, (33, 33, 3), dtype=np.uint8)
    mask = Segmenter(engine, card).predict(image).mask
    weight, bias = conv_params(21)
    expected = reference(image[None].astype(np.float32), weight, bias, False)[0].argmax(-1)
    assert (mask == expected).mean() >= 0.999
    assert Segmenter(engine, card).predict(image[:20]).mask.shape == (20, 33)  # resized back


def test_foreign_one_channel_onnx_is_a_foreground_probability(tmp_path, rng):
    path = onnx_model(
        tmp_path / "p.onnx", layout="NCHW", dtype="float", channels=1, size=None, sigmoid=True
    )
    engine, card = load_engine(
        path, "onnxruntime", threads=2, contract=["preprocessing.resize=none"]
    )
    assert card.output == "probability" and card.classes == ["background", "foreground"]
    assert card.preprocessing.layout == "NCHW" and card.preprocessing.resize == "none"
    image = rng.integers(0, 256, (24, 40, 3), dtype=np.uint8)
    result = Segmenter(engine, card).predict(image, probabilities=True)
    weight, bias = conv_params(1)
    prob = reference(image[None] / 127.5 - 1.0, weight, bias, True)[0, ..., 0]
    assert np.allclose(result.probabilities, prob, atol=1e-5)
    assert (result.mask == (prob > 0.5)).all()
    assert 0 < result.mask.mean() < 1


def test_foreign_quantized_tflite_takes_normalisation_from_its_quantization(tmp_path, rng):
    _needs_litert()
    path = tflite_model(tmp_path / "q.tflite", size=33, channels=21, quantized_input=(2 / 255, 128))
    engine, card = load_engine(path, threads=2)
    assert engine.name == "litert" and card.preprocessing.layout == "NHWC"
    assert np.allclose(card.preprocessing.mean, 128 / 255) and card.preprocessing.size == 33
    image = rng.integers(0, 256, (33, 33, 3), dtype=np.uint8)
    mask = Segmenter(engine, card).predict(image).mask
    weight, bias = conv_params(21)
    expected = reference((image[None] - 128.0) * 2 / 255, weight, bias, False)[0].argmax(-1)
    assert (mask == expected).mean() >= 0.999
    with pytest.raises(ModelError, match=r"runs only at input shape \[1, 33, 33, 3\]"):
        engine.run(np.zeros((1, 65, 65, 3), np.float32))


def test_foreign_person_tflite_gives_probability_mask(tmp_path, rng):
    _needs_litert()
    path = tflite_model(tmp_path / "person.tflite", size=17, channels=1, sigmoid=True, seed=3)
    engine, card = load_engine(path, "litert", threads=2)
    assert card.output == "probability" and card.preprocessing.resize == "fixed"
    image = rng.integers(0, 256, (17, 17, 3), dtype=np.uint8)
    result = Segmenter(engine, card).predict(image, probabilities=True)
    weight, bias = conv_params(1, seed=3)
    prob = reference(image[None] / 127.5 - 1.0, weight, bias, True)[0, ..., 0]
    assert np.allclose(result.probabilities, prob, atol=1e-5)


def test_tflite_metadata_round_trip_keeps_the_model_runnable(tmp_path):
    _needs_litert()
    from atrous.card import add_tflite_metadata, read_tflite_metadata
    from atrous.models.zoo import default_card

    path = tflite_model(tmp_path / "m.tflite", size=9, channels=4)
    card = default_card("deeplabv3_mnv2_dm05_os16", num_classes=4)
    card.preprocessing = card.preprocessing.model_copy(
        update={"layout": "NHWC", "resize": "fixed", "size": 9, "pad_multiple": 1}
    )
    content = add_tflite_metadata(path.read_bytes(), {"atrous.card": card.to_json().encode()})
    path.write_bytes(content)
    assert read_tflite_metadata(content)["atrous.card"] == card.to_json().encode()
    engine, loaded = load_engine(path, threads=2)
    assert loaded.classes == card.classes and loaded.model == card.model
    assert engine.run(np.zeros((1, 9, 9, 3), np.float32)).shape == (1, 4, 9, 9)


def test_contract_overrides_are_validated(tmp_path):
    path = onnx_model(tmp_path / "f.onnx", layout="NHWC", dtype="uint8", channels=3, size=9)
    _, card = load_engine(path, "onnxruntime", contract=["classes=[sky, road, car]"])
    assert card.classes == ["sky", "road", "car"] and len(card.palette) == 3
    with pytest.raises(ModelError, match="f.onnx"):
        load_engine(path, "onnxruntime", contract=["output=maybe"])


def test_inspect_and_predict_cli_on_a_foreign_model(tmp_path, rng):
    from PIL import Image
    from typer.testing import CliRunner

    from atrous.cli import app

    path = onnx_model(tmp_path / "f.onnx", layout="NHWC", dtype="uint8", channels=21, size=33)
    runner = CliRunner()
    result = runner.invoke(app, ["inspect", str(path)])
    assert result.exit_code == 0, result.output
    assert "card from its signature" in result.output and "NHWC" in result.output
    Image.fromarray(rng.integers(0, 256, (40, 30, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    out = tmp_path / "out"
    result = runner.invoke(
        app,
        [
            "predict",
            str(path),
            str(tmp_path / "a.png"),
            "--out",
            str(out),
            "--engine",
            "onnxruntime",
            "--contract",
            "classes=[a, b, c]",
            "--no-overlay",
        ],
    )
    assert result.exit_code != 0  # 21 output channels but 3 class names: refused
    result = runner.invoke(
        app,
        ["predict", str(path), str(tmp_path / "a.png"), "--out", str(out), "--threads", "2"],
    )
    assert result.exit_code == 0, result.output
    assert Image.open(out / "a.png").size == (30, 40)


# -- engine auto --------------------------------------------------------------------------------


def test_auto_engine_measures_once_and_caches(exported, tmp_path, monkeypatch):
    import json

    from atrous.runtimes import auto

    monkeypatch.setenv("ATROUS_CACHE", str(tmp_path / "cache"))
    calls = []
    real = auto.time_engine

    def counting(engine, batch, warmup=2, runs=5):
        calls.append(engine.name)
        return real(engine, batch, warmup=1, runs=1)

    monkeypatch.setattr(auto, "time_engine", counting)
    engine, _ = load_engine(exported[0], "auto", threads=2)
    assert sorted(calls) == ["onnxruntime", "openvino"]
    table = json.loads((tmp_path / "cache" / "engines.json").read_text())
    (entry,) = table.values()
    assert entry["engine"] == engine.name == min(entry["timings_ms"], key=entry["timings_ms"].get)
    assert entry["shape"] == [1, 3, 104, 104]  # the card's size (97) padded to a multiple of 8
    again, _ = load_engine(exported[0], "auto", threads=2)
    assert again.name == engine.name and len(calls) == 2  # from the cache, no new timing


def test_threads_mean_intra_op_threads_on_every_engine(exported):
    from atrous.runtimes import open_engine

    for name in ("onnxruntime", "openvino"):
        engine = open_engine(exported[0], name, threads=1)
        assert engine.threads == 1 and engine.describe()["threads"] == 1
    ov = open_engine(exported[0], "openvino", threads=1)
    assert ov.compiled.get_property("INFERENCE_NUM_THREADS") == 1
    # FP32 unless asked: OpenVINO would otherwise pick bf16 where the CPU offers it
    import openvino

    assert ov.compiled.get_property("INFERENCE_PRECISION_HINT") == openvino.Type.f32


def test_sidecar_card_is_used_for_a_file_without_metadata(tmp_path):
    from atrous.runtimes import read_exported_card
    from atrous.runtimes.contract import SIDECAR_SUFFIX

    path = onnx_model(tmp_path / "f.onnx", layout="NHWC", dtype="uint8", channels=3, size=9)
    _, inferred = load_engine(path, "onnxruntime")
    card = inferred.model_copy(update={"classes": ["sky", "road", "car"], "name": "roads"})
    (tmp_path / ("f.onnx" + SIDECAR_SUFFIX)).write_text(card.to_json())
    engine, loaded = load_engine(path, "onnxruntime")
    assert loaded.name == "roads" and loaded.classes == ["sky", "road", "car"]
    assert read_exported_card(path)[1] == "sidecar"
    assert engine.run(np.zeros((1, 9, 9, 3), np.float32)).shape == (1, 3, 9, 9)  # NCHW out
