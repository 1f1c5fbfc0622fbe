"""fp16 weights: halve an ONNX file's size while computing in fp32.

Each large float32 initializer is stored as float16 and followed by a Cast back to float32.
ONNX Runtime folds those casts when the session loads, so inference speed is that of the fp32
model (CPUs here have no fast fp16 arithmetic) and outputs differ only by weight rounding.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from atrous._atomic import atomic_path
from atrous.errors import InputError

__all__ = ["fp16_weights"]


def fp16_weights(source: str | Path, out: str | Path, min_elements: int = 64) -> Path:
    """Write ``source`` with float32 initializers of ``min_elements``+ values stored as fp16."""
    source, out = Path(source), Path(out)
    if not source.is_file():
        raise InputError(f"{source}: file not found")
    proto = onnx.load(str(source))
    graph = proto.graph
    casts = []
    kept = []
    for init in graph.initializer:
        if init.data_type != onnx.TensorProto.FLOAT or int(np.prod(init.dims)) < min_elements:
            kept.append(init)
            continue
        half = numpy_helper.from_array(
            numpy_helper.to_array(init).astype(np.float16), f"{init.name}__fp16"
        )
        kept.append(half)
        casts.append(
            helper.make_node(
                "Cast",
                [half.name],
                [init.name],
                name=f"{init.name}__cast",
                to=onnx.TensorProto.FLOAT,
            )
        )
    del graph.initializer[:]
    graph.initializer.extend(kept)
    nodes = casts + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.checker.check_model(proto)
    with atomic_path(out) as tmp:
        onnx.save(proto, str(tmp))
    return out
