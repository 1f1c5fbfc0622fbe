"""The benchmark's precision column: from the card, else from the graph."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from atrous.bench.latency import benchmark
from atrous.bench.precision import model_precision
from atrous.models.zoo import default_card


def _onnx(path, nodes, initializers):
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
        initializers,
    )
    onnx.save(helper.make_model(graph), str(path))
    return path


def test_precision_is_read_from_quantize_nodes_and_weight_types(tmp_path):
    card = default_card("deeplabv3_mnv2_dm05_os16")
    scale = numpy_helper.from_array(np.array(0.1, np.float32), "s")
    zero = numpy_helper.from_array(np.array(0, np.int8), "z")
    q = helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"])
    dq = helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"])
    int8 = _onnx(tmp_path / "q.onnx", [q, dq], [scale, zero])
    half = numpy_helper.from_array(np.ones(1, np.float16), "h")
    fp16 = _onnx(tmp_path / "h.onnx", [helper.make_node("Identity", ["x"], ["y"])], [half])
    fp32 = _onnx(tmp_path / "f.onnx", [helper.make_node("Identity", ["x"], ["y"])], [])
    assert [model_precision(card, p) for p in (int8, fp16, fp32)] == ["int8", "fp16", "fp32"]
    xml = tmp_path / "m.xml"
    xml.write_text('<net><layer type="FakeQuantize"/></net>')
    assert model_precision(card, xml) == "int8"
    assert model_precision(card, None) == "fp32"


def test_benchmark_table_has_a_precision_column(tiny_checkpoint):
    result = benchmark([str(tiny_checkpoint[0])], engine="torch", sizes=[65], runs=1, warmup=0)
    cols, rows = result.table_rows()
    assert cols[2] == "precision" and {r[2] for r in rows} == {"fp32"}
    assert result.to_dict()["records"][0]["precision"] == "fp32"
