"""The ONNX -> TFLite converter table: the supported set is its keys, dispatch goes through it."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from atrous.errors import ModelError
from atrous.export import onnx_to_tflite as walk
from atrous.export import tflite_ops
from atrous.export.tflite_ops import CONVERTERS, SUPPORTED_OPS, converts

EXPECTED = (
    "Conv, Relu, Clip, Add, Mul, GlobalAveragePool, ReduceMean, Expand, Concat, Resize, "
    "MaxPool, Pad, ArgMax, Cast, Identity, HardSwish, Sigmoid, HardSigmoid, Transpose, Reshape, "
    "Slice, ConvTranspose"
)


def _model(op_type: str, name: str = "", **attrs) -> onnx.ModelProto:
    """x (1x3x8x8) -> one ``op_type`` node -> y (same shape)."""
    value = [
        onnx.helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, [1, 3, 8, 8]) for n in "xy"
    ]
    node = onnx.helper.make_node(op_type, ["x"], ["y"], name=name, **attrs)
    graph = onnx.helper.make_graph([node], "g", [value[0]], [value[1]])
    return onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)])


def test_supported_ops_are_the_table_keys_in_registration_order():
    assert tuple(CONVERTERS) == SUPPORTED_OPS
    assert set(SUPPORTED_OPS) == set(CONVERTERS)
    assert ", ".join(SUPPORTED_OPS) == EXPECTED  # the order the error message lists them in
    assert walk.SUPPORTED_OPS == SUPPORTED_OPS  # still importable where it always was
    assert CONVERTERS["Relu"] is CONVERTERS["Clip"] and CONVERTERS["Add"] is CONVERTERS["Mul"]


def test_an_unsupported_op_gets_the_one_line_error_naming_node_and_table():
    pytest.importorskip("ai_edge_litert")
    with pytest.raises(ModelError) as err:
        walk.onnx_to_tflite(_model("Tanh", name="head/act"))
    message = str(err.value)
    assert message == (
        f"node head/act: ONNX operator Tanh has no TFLite conversion here (supported: {EXPECTED})"
    )
    assert "\n" not in message
    with pytest.raises(ModelError, match=r"^node Neg: ONNX operator Neg has no TFLite"):
        walk.onnx_to_tflite(_model("Neg"))  # an unnamed node is named by its type


def test_a_second_converter_for_one_op_is_refused(monkeypatch):
    monkeypatch.setattr(tflite_ops, "CONVERTERS", dict(CONVERTERS))
    with pytest.raises(ValueError, match="Conv already has a TFLite converter"):
        converts("Conv")(lambda *args: None)
    assert tflite_ops.CONVERTERS == CONVERTERS


def test_a_registered_converter_is_dispatched_with_its_attributes(monkeypatch):
    """One decorated function makes an operator convertible: the walk calls it with the node's
    decoded attributes and its output name, and the error lists it."""
    pytest.importorskip("ai_edge_litert")
    from ai_edge_litert.interpreter import Interpreter

    monkeypatch.setattr(tflite_ops, "CONVERTERS", dict(CONVERTERS))
    calls = []

    @converts("Neg")
    def _alias(writer, node, attrs, fused, out_name):
        calls.append((node.op_type, attrs, out_name))
        writer.index[out_name] = writer.input_of(node, node.input[0])  # a stand-in: no operator

    content = walk.onnx_to_tflite(_model("Neg", alpha=0.5))
    assert calls == [("Neg", {"alpha": 0.5}, "y")]
    interpreter = Interpreter(model_content=content)
    interpreter.allocate_tensors()
    x = np.arange(3 * 64, dtype=np.float32).reshape(1, 8, 8, 3)
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
    interpreter.invoke()
    np.testing.assert_array_equal(
        interpreter.get_tensor(interpreter.get_output_details()[0]["index"]), x
    )
    with pytest.raises(ModelError, match=r"supported: Conv, .*, ConvTranspose, Neg\)$"):
        walk.onnx_to_tflite(_model("Tanh"))
