"""The OpenVINO passes around NNCF (atrous.quantize.openvino_graph): ShuffleNet's channel
shuffles and the slices after them become one-hot 1x1 convolutions with the same values, and its
int8 fast graph runs every concat in uint8 and every selection on an integer kernel (the CPU
plugin's runtime model says so), still agreeing with float. A network without such concats
(MobileNetV2's, a V3+ decoder's) is left as it was. Per-channel gates (squeeze-and-excitation,
LR-ASPP's head) multiply in float."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

pytest.importorskip("nncf")
import openvino as ov  # noqa: E402

from atrous.export.onnx import export_onnx  # noqa: E402
from atrous.export.parity import diversify, synthetic_image  # noqa: E402
from atrous.fastpath import export_fast_int8  # noqa: E402
from atrous.models import default_card, get_model  # noqa: E402
from atrous.quantize.openvino_graph import (  # noqa: E402
    SELECT_SUFFIX,
    concat_feeders,
    float_channel_gates,
    shuffles_to_selections,
)
from atrous.segmenter import Segmenter  # noqa: E402
from atrous.sources import load_engine  # noqa: E402

SHUFFLE = "deeplabv3_shufflenetv2_x1_os16"
SIZE = 96
F32 = {"INFERENCE_NUM_THREADS": 1, "INFERENCE_PRECISION_HINT": "f32"}


def _net(name: str):
    card = default_card(name)
    pre = card.preprocessing.model_copy(update={"resize": "none", "size": None})
    card = card.model_copy(update={"preprocessing": pre})
    return diversify(get_model(name).eval(), card), card


@pytest.fixture(scope="module")
def shuffle_onnx(tmp_path_factory):
    model, card = _net(SHUFFLE)
    return export_onnx(model, card, tmp_path_factory.mktemp("shuf") / "s.onnx")


def test_shuffles_become_channel_selections_with_the_same_values(shuffle_onnx):
    core = ov.Core()
    plain, fused = ov.convert_model(str(shuffle_onnx)), ov.convert_model(str(shuffle_onnx))
    before = Counter(n.get_type_name() for n in plain.get_ordered_ops())
    # ShuffleNetV2 1.0x at OS16: 4 + 8 + 4 units, one shuffle each
    assert shuffles_to_selections(fused) == 16
    kinds = Counter(n.get_type_name() for n in fused.get_ordered_ops())
    assert kinds["Transpose"] == 0 and kinds["Slice"] == before["Slice"] - 2 * 13
    selections = [
        n for n in fused.get_ordered_ops() if n.get_friendly_name().endswith(SELECT_SUFFIX)
    ]
    # 13 stride-1 units: the pass-through half by selection, the other half straight into the
    # branch's first convolution (its weights widened); 3 shuffles feed a whole unit or the head
    assert len(selections) == 13 + 3
    assert kinds["Convolution"] == before["Convolution"] + len(selections)
    widened = [
        n
        for n in fused.get_ordered_ops()
        if n.get_type_name() == "Convolution"
        and n not in selections
        and n.get_input_partial_shape(1)[1].get_length()
        == 2 * n.get_input_partial_shape(1)[0].get_length()
    ]
    assert len(widened) == 13
    x = np.random.default_rng(0).normal(0, 1, (1, 3, SIZE, SIZE)).astype(np.float32)
    want = core.compile_model(plain, "CPU", F32)(x)[0]
    got = core.compile_model(fused, "CPU", F32)(x)[0]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())


def test_only_concats_of_relus_and_slices_get_quantizers(shuffle_onnx, tmp_path):
    model = ov.convert_model(str(shuffle_onnx))
    shuffles_to_selections(model)
    # 3 downsampling units (two ReLU branches) + 13 stride-1 units (a ReLU and a selection)
    assert len(concat_feeders(model)) == 3 * 2 + 13 * 2
    plus, card = _net("deeplabv3plus_mobilenet_v2_smp")  # decoder concat: upsampled + ReLU
    other = ov.convert_model(str(export_onnx(plus, card, tmp_path / "p.onnx")))
    assert shuffles_to_selections(other) == 0 and concat_feeders(other) == []


def test_shufflenet_int8_runs_its_concats_and_selections_in_uint8(tmp_path):
    model, card = _net(SHUFFLE)
    photos = [synthetic_image(SIZE, SIZE, seed=i) for i in range(4)]
    xml = export_fast_int8(model, card, tmp_path / "s.xml", photos, num=4)
    compiled = ov.Core().compile_model(str(xml), "CPU", F32)
    kinds = Counter()
    for node in compiled.get_runtime_model().get_ordered_ops():
        info = node.get_rt_info()
        kind = info["layerType"].astype(str)
        if node.get_friendly_name().endswith(SELECT_SUFFIX):
            kind = "selection"
        if kind in ("Concatenation", "ShuffleChannels", "Split", "selection"):
            kinds[kind, info["runtimePrecision"].astype(str)] += 1
    assert kinds[("selection", "u8")] == 13 + 3, kinds
    assert kinds[("Concatenation", "u8")] >= 16, kinds
    assert not [k for k in kinds if k[0] in ("ShuffleChannels", "Split")], kinds
    assert not [k for k in kinds if k[1] != "u8"], kinds  # no float concat or selection
    # still the float model's labels on most pixels (random weights: small margins)
    fast = Segmenter(*load_engine(xml, "openvino", 1)).at_full_resolution()
    eager = Segmenter.from_file(_save(model, card, tmp_path), engine="torch")
    image = synthetic_image(SIZE, SIZE, seed=7)
    assert (fast.predict(image).mask == eager.predict(image).mask).mean() > 0.85


def _save(model, card, tmp_path):
    from atrous.checkpoint import save_checkpoint

    path = tmp_path / "s.pt"
    save_checkpoint(path, model, card)
    return path


def _fake_quantize(x, low: float, high: float):
    from openvino import opset13 as ops

    lo, hi = ops.constant(np.float32(low)), ops.constant(np.float32(high))
    return ops.fake_quantize(x, lo, hi, lo, hi, 256)


def _gated(shape=(1, 8, 6, 6)):
    """x -> quantized; gate = hard-sigmoid(mean over H, W), quantized; x * gate: an SE block's
    multiply as NNCF leaves it; and a product of two feature maps beside it."""
    from openvino import opset13 as ops

    x = ops.parameter(list(shape), np.float32)
    xq = _fake_quantize(x, -4.0, 4.0)
    mean = ops.reduce_mean(xq, ops.constant(np.array([2, 3], np.int64)), True)
    gate = ops.hard_sigmoid(mean, ops.constant(np.float32(0.2)), ops.constant(np.float32(0.5)))
    gated = ops.multiply(xq, _fake_quantize(gate, 0.0, 1.0))
    squared = ops.multiply(xq, _fake_quantize(xq, -4.0, 4.0))  # two maps: not a gate
    return ov.Model([gated, squared], [x])


def test_a_per_channel_gate_multiplies_unquantized():
    x = np.random.default_rng(0).uniform(-4, 4, (1, 8, 6, 6)).astype(np.float32)
    step = 8.0 / 255
    xq = np.round((x + 4) / step) * step - 4  # the input quantizer's grid
    gate = np.clip(0.2 * xq.mean((2, 3), keepdims=True) + 0.5, 0, 1)
    model = _gated()
    before = ov.Core().compile_model(model, "CPU", F32)(x)
    quantized_gate = np.round(gate * 255) / 255
    np.testing.assert_allclose(before[0], xq * quantized_gate, atol=1e-5)
    assert float_channel_gates(model) == 1  # the gate only, not the product of two maps
    after = ov.Core().compile_model(model, "CPU", F32)(x)
    np.testing.assert_allclose(after[0], xq * gate, atol=1e-5)
    np.testing.assert_allclose(after[1], before[1], atol=1e-6)
    assert float_channel_gates(model) == 0  # nothing left to free


def _quantized_gates(model) -> tuple[int, int]:
    """(quantized, float) per-channel gates of the multiplies in ``model``: an input computed
    at static 1 x 1 spatial size (not a constant scale) times a feature map of any size."""

    def vector(shape) -> bool:
        return (
            shape.rank.get_length() == 4
            and shape[2].is_static
            and shape[3].is_static
            and (shape[2].get_length() * shape[3].get_length() == 1)
        )

    counts = [0, 0]
    for node in model.get_ordered_ops():
        if node.get_type_name() != "Multiply":
            continue
        ports = [node.input_value(i) for i in range(2)]
        vectors = [vector(p.get_partial_shape()) for p in ports]
        if sorted(vectors) != [False, True]:
            continue
        gate = ports[vectors.index(True)].get_node().get_type_name()
        if gate != "Constant":
            counts[gate != "FakeQuantize"] += 1
    return counts[0], counts[1]


def test_mobilenet_v3_int8_gates_are_float(tmp_path):
    model, card = _net("lraspp_mobilenet_v3_large_tv")
    photos = [synthetic_image(SIZE, SIZE, seed=i) for i in range(2)]
    xml = export_fast_int8(model, card, tmp_path / "l.xml", photos, num=2)
    # 8 squeeze-and-excitation blocks in MobileNetV3-Large and the head's gate
    assert _quantized_gates(ov.Core().read_model(str(xml))) == (0, 9)
