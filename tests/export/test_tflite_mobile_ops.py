"""The mobile backbones through the TFLite writer (and ONNX Runtime / OpenVINO on the same
graph): tiny MobileNetV3-small and ShuffleNetV2 DeepLabs against PyTorch, and the new
operators one at a time against NumPy."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

from atrous.config import ModelConfig
from atrous.export.onnx import export_onnx
from atrous.export.parity import diversify, sample_batch
from atrous.export.tflite_ops_mobile import nhwc_permutation
from atrous.models.deeplab import DeepLab
from atrous.models.zoo import default_card

pytest.importorskip("ai_edge_litert")
from atrous.export.onnx_to_tflite import onnx_to_tflite  # noqa: E402

SIDE = 65
CONFIGS = {
    # hardswish, squeeze-excite (HardSigmoid), LR-ASPP's sigmoid gate
    "mobilenet_v3_small": dict(
        backbone="mobilenet_v3_small", width_mult=0.35, head="lraspp", head_channels=32,
        aux_stride=8, activation="hardswish",
    ),
    # channel split (Slice) and shuffle (Reshape, Transpose), the learned transposed upsampling
    "shufflenet_v2": dict(
        backbone="shufflenet_v2_x0_5", head_channels=32, separable_aspp=True, decoder=True,
        decoder_channels=32, separable_decoder=True, upsampling="transposed",
    ),
}  # fmt: skip


def _run_tflite(content: bytes, x_nchw: np.ndarray) -> np.ndarray:
    """One LiteRT run on the NHWC twin of ``x_nchw``; the output back in NCHW when 4-D."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=content, num_threads=1)
    interpreter.allocate_tensors()
    x = x_nchw.transpose(0, 2, 3, 1) if x_nchw.ndim == 4 else x_nchw
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], np.ascontiguousarray(x))
    interpreter.invoke()
    out = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    return out.transpose(0, 3, 1, 2) if out.ndim == 4 else out


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def exported(request, tmp_path_factory):
    """(name, model, card, fixed-size ONNX graph) of a tiny 5-class model with varied labels."""
    config = ModelConfig(num_classes=5, **CONFIGS[request.param])
    card = default_card("deeplabv3_mnv2_dm05_os16", num_classes=5)
    card = card.model_copy(update={"model": config})
    model = diversify(DeepLab(config).eval(), card)
    path = tmp_path_factory.mktemp("mobile") / f"{request.param}.onnx"
    export_onnx(model, card, path, dynamic=False, sample_size=(SIDE, SIDE))
    return request.param, model, card, path


def _reference(model, card, seed: int) -> tuple[np.ndarray, np.ndarray]:
    batch = sample_batch(card, (SIDE, SIDE), seed=seed)
    with torch.no_grad():
        return batch, model(torch.from_numpy(batch)).numpy()


def _agreement(a: np.ndarray, b: np.ndarray) -> float:
    return float((a.argmax(1) == b.argmax(1)).mean())


def test_the_backbone_converts_to_tflite_and_agrees_with_pytorch(exported):
    name, model, card, path = exported
    proto = onnx.load(str(path))
    used = {n.op_type for n in proto.graph.node}
    new = {"mobilenet_v3_small": {"HardSwish", "HardSigmoid", "Sigmoid"}}.get(
        name, {"Slice", "Reshape", "Transpose", "ConvTranspose"}
    )
    assert new <= used  # the graph really exercises the new converters
    content = onnx_to_tflite(proto)
    for seed in (0, 1):
        batch, ref = _reference(model, card, seed)
        got = _run_tflite(content, batch)
        assert len(np.unique(ref.argmax(1))) >= 2
        assert np.abs(got - ref).max() < 1e-3 * max(1.0, np.abs(ref).max())
        assert _agreement(got, ref) >= 0.999


def test_onnx_runtime_and_openvino_agree_on_the_same_graph(exported):
    _, model, card, path = exported
    from atrous.runtimes.onnxruntime_engine import OrtEngine

    engines = [OrtEngine(path, 1)]
    try:
        from atrous.runtimes.openvino_engine import OpenVinoEngine

        engines.append(OpenVinoEngine(path, 1))
    except ImportError:
        pass
    batch, ref = _reference(model, card, 2)
    for engine in engines:
        assert _agreement(engine.run(batch), ref) >= 0.999, engine.name


# -- single operators against NumPy ----------------------------------------------------------------
def _one_node(node: onnx.NodeProto, in_shape, out_shape, inits=()) -> onnx.ModelProto:
    values = [
        onnx.helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, s)
        for n, s in (("x", in_shape), ("y", out_shape))
    ]
    graph = onnx.helper.make_graph([node], "g", [values[0]], [values[1]], list(inits))
    return onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)])


def _ints(name: str, values) -> onnx.TensorProto:
    return onnx.numpy_helper.from_array(np.array(values, np.int64), name)


def test_nhwc_permutation_matches_transposing_through_nchw():
    x = np.arange(2 * 3 * 4 * 5).reshape(2, 3, 4, 5)  # NCHW
    for perm in ([0, 1, 3, 2], [0, 2, 1, 3], [3, 2, 1, 0]):
        want = x.transpose(perm).transpose(0, 2, 3, 1)
        got = x.transpose(0, 2, 3, 1).transpose(nhwc_permutation(perm))
        np.testing.assert_array_equal(got, want)


def test_hard_sigmoid_of_any_slope_and_a_strided_slice():
    x = np.linspace(-6, 6, 1 * 3 * 6 * 6, dtype=np.float32).reshape(1, 3, 6, 6)
    node = onnx.helper.make_node("HardSigmoid", ["x"], ["y"], alpha=0.2, beta=0.5)
    got = _run_tflite(onnx_to_tflite(_one_node(node, x.shape, x.shape)), x)
    np.testing.assert_allclose(got, np.clip(0.2 * x + 0.5, 0, 1), atol=1e-6)
    starts, ends = _ints("s", [0, -5]), _ints("e", [3, 100])
    axes, steps = _ints("a", [1, 3]), _ints("t", [2, 1])
    node = onnx.helper.make_node("Slice", ["x", "s", "e", "a", "t"], ["y"])
    want = x[:, 0:3:2, :, 1:]
    proto = _one_node(node, x.shape, want.shape, [starts, ends, axes, steps])
    np.testing.assert_array_equal(_run_tflite(onnx_to_tflite(proto), x), want)


def test_a_depthwise_transposed_convolution_is_cropped_to_onnx_pads():
    rng = np.random.default_rng(0)
    deconv = torch.nn.ConvTranspose2d(3, 3, 4, 2, 1, groups=3, bias=False).eval()
    x = rng.normal(size=(1, 3, 5, 7)).astype(np.float32)
    with torch.no_grad():
        want = deconv(torch.from_numpy(x)).numpy()
    weight = onnx.numpy_helper.from_array(deconv.weight.detach().numpy(), "w")
    node = onnx.helper.make_node(
        "ConvTranspose", ["x", "w"], ["y"], group=3, kernel_shape=[4, 4], strides=[2, 2],
        pads=[1, 1, 1, 1],
    )  # fmt: skip
    got = _run_tflite(onnx_to_tflite(_one_node(node, x.shape, want.shape, [weight])), x)
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_a_channel_shuffle_is_one_transpose_of_the_nhwc_tensor(tmp_path):
    from ai_edge_litert import schema_py_generated as schema

    from atrous.export.onnx import torch_to_onnx
    from atrous.models.backbones.shufflenet_v2 import channel_shuffle

    class Shuffle(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return channel_shuffle(torch.cat([x, 2 * x], 1), 2)

    x = np.random.default_rng(1).normal(size=(1, 3, 5, 7)).astype(np.float32)
    proto = torch_to_onnx(Shuffle(), torch.from_numpy(x), tmp_path / "shuffle.onnx")
    content = onnx_to_tflite(proto)
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(content, 0))
    codes = [model.operatorCodes[o.opcodeIndex].builtinCode for o in model.subgraphs[0].operators]
    assert codes.count(schema.BuiltinOperator.TRANSPOSE) == 1
    want = np.concatenate([x, 2 * x], 1).reshape(1, 2, 3, 5, 7).swapaxes(1, 2).reshape(1, 6, 5, 7)
    np.testing.assert_array_equal(_run_tflite(content, x), want)
