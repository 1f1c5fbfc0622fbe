"""Graph passes around NNCF for OpenVINO int8: what keeps ShuffleNet's channel shuffles integer.

A ShuffleNetV2 unit ends in concat -> reshape -> transpose -> reshape (the shuffle) -> split.
NNCF quantizes only the inputs of the next convolutions, so all of that ran in float, with a
layout reorder around every transpose: half of the int8 network's time at 513x513. Two passes
make it integer: the shuffle becomes OpenVINO's ShuffleChannels (which the CPU plugin's
low-precision passes carry int8 through, where a reshape of run-time shape stops them), and the
ReLU outputs entering such a concat get an unsigned 8-bit quantizer, so the concat, the shuffle
and the split move uint8 (the pass-through half already is, from the concat before).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "activation_maxima",
    "concat_feeders",
    "fuse_channel_shuffles",
    "quantize_concat_inputs",
]

_SHUFFLE_PERM = [0, 2, 1, 3, 4]
# ops a uint8 tensor passes through unchanged (a concat input from one is already integer)
_PASS_THROUGH = {"Slice", "StridedSlice", "VariadicSplit", "Split", "ShuffleChannels", "Concat"}


def fuse_channel_shuffles(model: Any) -> int:
    """Replace every reshape -> transpose(0, 2, 1, 3, 4) -> reshape channel shuffle of the
    OpenVINO ``model`` by one ShuffleChannels (the same values); the number replaced."""
    from openvino import opset13 as ops

    replaced = 0
    for node in model.get_ordered_ops():
        if node.get_type_name() != "Transpose":
            continue
        before = node.input_value(0).get_node()
        perm = node.input_value(1).get_node()
        after = [t.get_node() for t in node.output(0).get_target_inputs()]
        if (
            before.get_type_name() != "Reshape"
            or perm.get_type_name() != "Constant"
            or list(perm.get_data()) != _SHUFFLE_PERM
            or len(after) != 1
            or after[0].get_type_name() != "Reshape"
        ):
            continue
        split = before.get_output_partial_shape(0)  # (N, groups, C / groups, H, W)
        source = before.input_value(0)
        if split.rank.get_length() != 5 or split[1].is_dynamic:
            continue
        if source.get_partial_shape().rank.get_length() != 4:
            continue
        shuffle = ops.shuffle_channels(source, 1, split[1].get_length())
        for target in list(after[0].output(0).get_target_inputs()):
            target.replace_source_output(shuffle.output(0))
        replaced += 1
    if replaced:
        model.validate_nodes_and_infer_types()
    return replaced


def concat_feeders(model: Any) -> list[str]:
    """Names of the ReLUs entering a concat whose other inputs are integer already (ReLUs too,
    or slices of a concat): the concats a uint8 quantizer per ReLU makes integer. A concat
    with any other input (an upsampled map, say) stays float and gets none."""
    names: list[str] = []
    for node in model.get_ordered_ops():
        if node.get_type_name() != "Concat":
            continue
        sources = [node.input_value(i).get_node() for i in range(node.get_input_size())]
        kinds = {s.get_type_name() for s in sources}
        if "Relu" in kinds and kinds <= _PASS_THROUGH | {"Relu"}:
            names += [s.get_friendly_name() for s in sources if s.get_type_name() == "Relu"]
    return list(dict.fromkeys(names))


def activation_maxima(model: Any, names: Sequence[str], batches: Sequence[np.ndarray]) -> dict:
    """The largest value each named node of the float ``model`` outputs over ``batches``."""
    import openvino as ov

    probe = model.clone()
    nodes = {n.get_friendly_name(): n for n in probe.get_ordered_ops()}
    probe.add_outputs([nodes[name].output(0) for name in names])
    compiled = ov.Core().compile_model(probe, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    first = len(compiled.outputs) - len(names)
    maxima = dict.fromkeys(names, 0.0)
    for batch in batches:
        result = compiled(batch)
        for k, name in enumerate(names):
            maxima[name] = max(maxima[name], float(np.max(result[compiled.outputs[first + k]])))
    return maxima


def quantize_concat_inputs(model: Any, maxima: dict) -> int:
    """Put an unsigned 8-bit quantizer over [0, max] between each named ReLU of the quantized
    ``model`` and the concats it enters; the number placed."""
    from openvino import opset13 as ops

    nodes = {n.get_friendly_name(): n for n in model.get_ordered_ops()}
    placed = 0
    for name, top in maxima.items():
        relu = nodes.get(name)
        if relu is None or top <= 0:
            continue
        targets = relu.output(0).get_target_inputs()
        concats = [t for t in targets if t.get_node().get_type_name() == "Concat"]
        low, high = ops.constant(np.float32(0.0)), ops.constant(np.float32(top))
        quantizer = ops.fake_quantize(relu.output(0), low, high, low, high, 256)
        for target in concats:
            target.replace_source_output(quantizer.output(0))
        placed += 1
    if placed:
        model.validate_nodes_and_infer_types()
    return placed
