"""Export: ONNX (and other formats) -> engine round trips, metadata, parity and the CLI."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch.nn.functional as F
from torch import nn
from typer.testing import CliRunner

from atrous.cli import app
from atrous.errors import ConfigError, ModelError
from atrous.export import check_parity, export_model, export_onnx, parity_sizes
from atrous.export.onnx import read_onnx_card
from atrous.export.parity import diversify, sample_batch, synthetic_image
from atrous.runtimes import TorchEngine
from atrous.sources import load_engine

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
    assert [r.size for r in tiny_onnx.parity.rows if r.scope == "network"] == SIZES
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
    assert stored.export.format == "onnx"
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
    assert loaded.export.format == "openvino"
    assert loaded.output == "logits"  # the default: masks agree at the images' own sizes
    reference = TorchEngine(model, threads=2)
    for i, size in enumerate(SIZES):
        batch = sample_batch(card, size, seed=20 + i)
        ref, got = reference.run(batch).argmax(1), engine.run(batch).argmax(1)
        assert got.shape == ref.shape
        assert (ref == got).mean() >= 0.999


def test_openvino_runs_the_onnx_file_too(tiny, tiny_onnx):
    _, model, card = tiny
    engine, loaded = load_engine(tiny_onnx.path, "openvino", threads=2)
    assert engine.name == "openvino" and loaded.classes == card.classes
    report = check_parity(TorchEngine(model, 2), engine, card, SIZES)
    assert report.ok and max(r.max_abs_diff for r in report.rows) < 1e-4


def _litert():
    from atrous.runtimes.litert_engine import litert_available

    if not litert_available():
        pytest.skip("ai-edge-litert is not installed (pip install 'atrous[tflite]')")


@pytest.mark.parametrize(("side", "argmax"), [(129, False), (96, True)])
def test_tflite_export_matches_pytorch(tiny, tmp_path, side, argmax):
    """Odd and even sizes (an even one needs explicit padding before stride-2 layers)."""
    _litert()
    path, model, card = tiny
    result = export_model(
        path, "tflite", tmp_path / "t.tflite", size=(side, side), threads=2, with_argmax=argmax
    )
    assert [r.size for r in result.parity.rows if r.scope == "network"] == [(side, side)] * 2
    assert result.parity.ok and min(r.classes_seen for r in result.parity.rows) >= 2
    if not argmax:
        assert max(r.max_abs_diff for r in result.parity.rows if r.scope == "network") < 1e-3
    engine, loaded = load_engine(result.path, threads=2)
    pre = loaded.preprocessing
    assert (pre.layout, pre.resize, pre.size) == ("NHWC", "fixed", side)
    with pytest.raises(ModelError, match="runs only at"):
        engine.run(np.zeros((1, 65, 97, 3), np.float32))


def test_tflite_segmenter_resizes_photos_to_the_file_size(tiny, tmp_path):
    from atrous.segmenter import Segmenter

    _litert()
    path, model, card = tiny
    result = export_model(path, "tflite", tmp_path / "t.tflite", size=(97, 97), with_argmax=False)
    seg = Segmenter.from_file(result.path, engine="litert", threads=2)
    image = synthetic_image(75, 120, seed=5)
    fixed = card.model_copy(deep=True)
    fixed.preprocessing = fixed.preprocessing.model_copy(
        update={"resize": "fixed", "size": 97, "pad_multiple": 1}
    )
    reference = Segmenter(TorchEngine(model, 2), fixed).predict(image).mask
    mask = seg.predict(image).mask
    assert mask.shape == (75, 120) and (mask == reference).mean() > 0.999


def _graph(nodes, inputs, outputs, initializers=()):
    return onnx.helper.make_model(
        onnx.helper.make_graph(nodes, "g", inputs, outputs, list(initializers)),
        opset_imports=[onnx.helper.make_opsetid("", 17)],
    )


def _value(name, shape):
    return onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, shape)


def test_tflite_converter_covers_resnet_pooling_and_the_v3plus_decoder(tmp_path):
    """ResNet's max pool (padded explicitly when SAME does not match), Xception's separable
    convolutions and the V3+ decoder's resize and concat, against PyTorch."""
    import torch

    from atrous.config import ModelConfig
    from atrous.export.onnx_to_tflite import onnx_to_tflite
    from atrous.models import DeepLab
    from atrous.models.zoo import default_card

    _litert()
    from ai_edge_litert.interpreter import Interpreter

    configs = [
        ModelConfig(backbone="resnet50", num_classes=3, output_stride=16),
        ModelConfig(
            backbone="mobilenet_v2",
            num_classes=4,
            width_mult=0.35,
            decoder=True,
            separable_decoder=True,
            separable_aspp=True,
            output_stride=8,
        ),
    ]
    for config, side in zip(configs, (64, 65), strict=True):
        card = default_card("deeplabv3_mnv2_dm05_os16", num_classes=config.num_classes)
        model = diversify(DeepLab(config).eval(), card)
        onnx_path = export_onnx(
            model,
            card,
            tmp_path / f"{side}.onnx",
            dynamic=False,
            sample_size=(side, side),
            with_argmax=False,
        )
        interpreter = Interpreter(model_content=onnx_to_tflite(onnx.load(onnx_path)))
        interpreter.allocate_tensors()
        x = sample_batch(card, (side, side), seed=1)
        with torch.no_grad():
            ref = model(torch.from_numpy(x)).numpy()
        interpreter.set_tensor(
            interpreter.get_input_details()[0]["index"], x.transpose(0, 2, 3, 1).copy()
        )
        interpreter.invoke()
        got = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
        got = got.transpose(0, 3, 1, 2)
        assert np.abs(got - ref).max() <= 1e-4 * max(1.0, np.abs(ref).max()), config.backbone


def test_resnet_int8_tflite_loads_and_runs_in_litert(tmp_path):
    """ResNet's stem max pool after a ReLU pads with zeros (a plain PAD): the int8 quantizer
    left PADV2's float minimum as a float constant, which LiteRT's int8 PADV2 refused."""
    import torch

    from atrous.config import ModelConfig
    from atrous.export.onnx_to_tflite import onnx_to_tflite, quantize_tflite
    from atrous.models import DeepLab
    from atrous.models.zoo import default_card

    _litert()
    from ai_edge_litert.interpreter import Interpreter

    config = ModelConfig(backbone="resnet50", num_classes=3, output_stride=16)
    card = default_card("deeplabv3_mnv2_dm05_os16", num_classes=3)
    model = diversify(DeepLab(config).eval(), card)
    onnx_path = export_onnx(
        model, card, tmp_path / "r.onnx", dynamic=False, sample_size=(64, 64), with_argmax=False
    )
    batches = [sample_batch(card, (64, 64), seed=s).transpose(0, 2, 3, 1) for s in range(4)]
    content = quantize_tflite(onnx_to_tflite(onnx.load(onnx_path)), batches, np.float32)
    interpreter = Interpreter(model_content=content)
    interpreter.allocate_tensors()  # failed to prepare PADV2 (INT8 != FLOAT32) before
    x = sample_batch(card, (64, 64), seed=9)
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x.transpose(0, 2, 3, 1))
    interpreter.invoke()
    got = interpreter.get_tensor(interpreter.get_output_details()[0]["index"]).argmax(-1)
    with torch.no_grad():
        want = model(torch.from_numpy(x)).argmax(1).numpy()
    assert (got == want).mean() > 0.8


def test_tflite_converter_names_an_unsupported_node():
    from atrous.export.onnx_to_tflite import onnx_to_tflite

    _litert()
    node = onnx.helper.make_node("Tanh", ["x"], ["y"], name="head/act")
    proto = _graph([node], [_value("x", [1, 3, 8, 8])], [_value("y", [1, 3, 8, 8])])
    with pytest.raises(ModelError, match=r"head/act.*Tanh"):
        onnx_to_tflite(proto)
    dynamic = _graph(
        [onnx.helper.make_node("Relu", ["x"], ["y"])],
        [_value("x", [1, 3, "h", 8])],
        [_value("y", [1, 3, "h", 8])],
    )
    with pytest.raises(ModelError, match="dynamic shape"):
        onnx_to_tflite(dynamic)


def test_int8_tflite_dequantizes_close_to_float(rng):
    """A shallow random network (conv + relu6, a residual add, a concat, a resize) stays within a
    few output quantization steps of float once calibrated; per-channel int8 weights."""
    from onnx import numpy_helper

    from atrous.export.onnx_to_tflite import onnx_to_tflite, quantize_tflite

    _litert()
    from ai_edge_litert.interpreter import Interpreter

    def init(name, *shape):
        return numpy_helper.from_array(rng.normal(0, 0.3, shape).astype(np.float32), name)

    inits = [init("w1", 8, 3, 3, 3), init("b1", 8), init("w2", 8, 8, 3, 3), init("w3", 4, 16, 1, 1)]
    inits.append(numpy_helper.from_array(np.array([0, 0, 32, 32], np.int64), "sizes"))
    nodes = [
        onnx.helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1], strides=[2, 2]),
        onnx.helper.make_node("Relu", ["c1"], ["r1"]),
        onnx.helper.make_node("Conv", ["r1", "w2"], ["c2"], pads=[2, 2, 2, 2], dilations=[2, 2]),
        onnx.helper.make_node("Add", ["c2", "r1"], ["a"]),
        onnx.helper.make_node("Concat", ["a", "r1"], ["cat"], axis=1),
        onnx.helper.make_node("Conv", ["cat", "w3"], ["logits16"]),
        onnx.helper.make_node(
            "Resize",
            ["logits16", "", "", "sizes"],
            ["y"],
            mode="linear",
            coordinate_transformation_mode="half_pixel",
        ),
    ]
    proto = _graph(nodes, [_value("x", [1, 3, 32, 32])], [_value("y", [1, 4, 32, 32])], inits)
    float_model = onnx_to_tflite(proto)
    samples = [rng.normal(0, 1, (1, 32, 32, 3)).astype(np.float32) for _ in range(16)]
    quantized = quantize_tflite(float_model, samples)

    def run(content, x):
        interpreter = Interpreter(model_content=content)
        interpreter.allocate_tensors()
        detail = interpreter.get_input_details()[0]
        scale, zero = detail["quantization"]
        if detail["dtype"] == np.int8:
            x = np.clip(np.round(x / scale + zero), -128, 127).astype(np.int8)
        interpreter.set_tensor(detail["index"], x)
        interpreter.invoke()
        out = interpreter.get_output_details()[0]
        y = interpreter.get_tensor(out["index"]).astype(np.float32)
        scale, zero = out["quantization"]
        return ((y - zero) * scale if out["dtype"] == np.int8 else y), scale, interpreter

    x = rng.normal(0, 1, (1, 32, 32, 3)).astype(np.float32)
    expected, _, _ = run(float_model, x)
    got, step, interpreter = run(quantized, x)
    assert step > 0 and np.abs(got - expected).mean() < 3 * step
    assert (got.argmax(-1) == expected.argmax(-1)).mean() > 0.9
    weights = [t for t in interpreter.get_tensor_details() if t["name"] in ("w1", "w2", "w3")]
    assert weights and all(t["dtype"] == np.int8 for t in weights)
    assert all(len(t["quantization_parameters"]["scales"]) in (8, 4) for t in weights)


def test_int8_tflite_export_checks_held_out_images(tiny_checkpoint, tmp_path):
    from atrous.config import DataConfig
    from atrous.data import build_dataset

    _litert()
    path, _, _ = tiny_checkpoint
    data = build_dataset(DataConfig(kind="synthetic", image_size=64, val_size=12), "val")
    result = export_model(
        path,
        "tflite",
        tmp_path / "q.tflite",
        size=(64, 64),
        precision="int8",
        calibration=[data[i] for i in range(12)],
        num=4,
    )
    assert len(result.parity.rows) == 8 and all(r.threshold == 0.95 for r in result.parity.rows)
    assert result.card.export.precision == "int8"
    engine, _ = load_engine(result.path, "litert", threads=2)
    assert engine.describe()["engine"] == "litert"
    with pytest.raises(ModelError, match="calibration"):
        export_model(path, "tflite", tmp_path / "r.tflite", size=(64, 64), precision="int8")
    with pytest.raises(ConfigError, match="applies to --format tflite"):
        export_model(path, "onnx", tmp_path / "r.onnx", precision="int8")


def test_export_cli_rejects_unknown_format(tiny, tmp_path):
    path, _, _ = tiny
    result = CliRunner().invoke(app, ["export", str(path), "--format", "caffe"])
    assert result.exit_code != 0
    assert "unknown export format 'caffe'" in str(result.exception) + result.output


def test_export_refuses_a_mismatched_suffix_and_misused_options_before_writing(tiny, tmp_path):
    path, _, _ = tiny
    for fmt, name in (("onnx", "m.model"), ("tflite", "m.onnx")):
        with pytest.raises(ConfigError, match=r"written to a '\.(onnx|tflite)' file"):
            export_model(path, fmt, tmp_path / name)
    runner = CliRunner()
    result = runner.invoke(app, ["export", str(path), "--calib", "synthetic", "-o",
                                 str(tmp_path / "m.onnx")])  # fmt: skip
    assert isinstance(result.exception, ConfigError) and "atrous quantize" in str(result.exception)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_onnx_export_refuses_an_opset_it_did_not_get_and_leaves_no_side_data(
    tiny, tmp_path, monkeypatch
):
    """torch falls back to another opset for one it cannot write (99 -> 18, with the weights in
    '<file>.data' beside it): the export must say so and leave nothing behind."""
    import torch

    _, model, card = tiny

    def fallback_export(net, args, path, **kwargs):
        node = onnx.helper.make_node("Relu", ["input"], ["logits"])
        value = onnx.helper.make_tensor_value_info("input", onnx.TensorProto.FLOAT, [1, 3, 4, 4])
        out = onnx.helper.make_tensor_value_info("logits", onnx.TensorProto.FLOAT, [1, 3, 4, 4])
        graph = onnx.helper.make_graph([node], "g", [value], [out])
        proto = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 18)])
        onnx.save(proto, path)
        (tmp_path / f"{path.rsplit('/', 1)[1]}.data").write_bytes(b"weights")

    monkeypatch.setattr(torch.onnx, "export", fallback_export)
    with pytest.raises(ModelError, match="opset 19 was asked for.*wrote opset 18"):
        export_onnx(model, card, tmp_path / "o.onnx", opset=19)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_failed_parity_leaves_no_file(tiny, tmp_path, monkeypatch):
    from atrous.export import pipeline

    def broken(*args, **kwargs):
        raise ModelError("simulated parity failure")

    monkeypatch.setattr(pipeline, "check_parity", broken)
    with pytest.raises(ModelError, match="simulated"):
        export_model(tiny[0], "onnx", tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()


def test_int8_tflite_check_compares_at_the_file_size(tiny_checkpoint, tmp_path):
    """The reference resizes images to the .tflite's size too: at a size other than the card's,
    the agreement measures quantization only (a random-init model: near-constant labels)."""
    _litert()
    path, _, _ = tiny_checkpoint
    photos = [synthetic_image(90, 120, seed=i) for i in range(6)]
    result = export_model(path, "tflite", tmp_path / "q.tflite", size=(65, 65),
                          precision="int8", calibration=photos, num=4)  # fmt: skip
    assert len(result.parity.rows) == 2 and result.parity.ok
    assert min(r.agreement for r in result.parity.rows) > 0.99


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


def test_onnx_export_traces_without_an_autograd_graph(tiny, tmp_path):
    # a trace with autograd kept every activation for a backward pass that never comes:
    # Xception-71 traced at its card's 2049 px went past 24 GB
    _, model, card = tiny
    seen: list[bool] = []
    hook = model.classifier.register_forward_hook(lambda m, i, out: seen.append(out.requires_grad))
    try:
        export_onnx(model, card, tmp_path / "t.onnx", sample_size=(65, 65))
    finally:
        hook.remove()
    assert seen and not any(seen)
    assert all(p.requires_grad for p in model.parameters())  # the model itself is untouched
