"""Graph passes around NNCF for OpenVINO int8: what makes ShuffleNet's channel shuffles and
MobileNetV3's squeeze-and-excitation gates cheap.

A ShuffleNetV2 unit ends in concat -> reshape -> transpose -> reshape (the shuffle) -> slices.
NNCF quantizes only the inputs of the next convolutions, so all of that ran in float, with a
layout reorder around every transpose: half of the int8 network's time at 513x513. Two passes
make it integer and fast: each shuffle and the slices after it become one-hot 1x1 convolutions
(a channel selection per slice, which the CPU plugin runs on its int8 matrix kernels; as
ShuffleChannels the shuffles stayed 40% of the network, the slices ran a reference kernel), or
vanish into the next convolution's weights where a slice feeds one, and the ReLUs and
selections entering a concat get an unsigned 8-bit quantizer, so every concat moves uint8.

A squeeze-and-excitation gate (and LR-ASPP's head gate) multiplies a feature map by one computed
value per channel. NNCF quantizes both factors; with the gate's C values left float the CPU
plugin's multiply runs a cheaper kernel (LR-ASPP MobileNetV3 at 520: 0.88 -> 0.47 ms of its
multiplies, profiled) and the gate loses no precision.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "activation_maxima",
    "concat_feeders",
    "float_channel_gates",
    "quantize_concat_inputs",
    "shuffles_to_selections",
]

_SHUFFLE_PERM = [0, 2, 1, 3, 4]
SELECT_SUFFIX = "/channel_select"  # the one-hot convolutions that replace channel shuffles
# ops a uint8 tensor passes through unchanged (a concat input from one is already integer)
_PASS_THROUGH = {"Slice", "StridedSlice", "VariadicSplit", "Split", "ShuffleChannels", "Concat"}


def _shuffles(model: Any) -> list[tuple[Any, Any, int]]:
    """(source output, last reshape, groups) of every reshape -> transpose(0, 2, 1, 3, 4) ->
    reshape channel shuffle of the OpenVINO ``model`` over a 4-D tensor of static groups."""
    found = []
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
        shape = source.get_partial_shape()
        if split.rank.get_length() != 5 or split[1].is_dynamic:
            continue
        if shape.rank.get_length() != 4 or shape[1].is_dynamic:
            continue
        found.append((source, after[0], split[1].get_length()))
    return found


def _selection(source: Any, channels: np.ndarray, name: str) -> Any:
    """A 1x1 convolution whose output channel j is input channel ``channels[j]`` (one-hot
    weights: exact in int8, and the CPU plugin runs it on its fastest integer kernels)."""
    from openvino import opset13 as ops

    width = source.get_partial_shape()[1].get_length()
    weights = np.zeros((len(channels), width, 1, 1), np.float32)
    weights[np.arange(len(channels)), channels] = 1.0
    conv = ops.convolution(source, ops.constant(weights), [1, 1], [0, 0], [0, 0], [1, 1])
    conv.set_friendly_name(f"{name}{SELECT_SUFFIX}")
    return conv


def _widen_into(target: Any, source: Any, channels: np.ndarray) -> bool:
    """Feed ``source`` (all of its channels) straight into the convolution at ``target`` that
    took ``source``'s ``channels``, with zero weights for the others; False (nothing changed)
    where ``target`` is not the data input of a plain convolution with constant weights."""
    from openvino import opset13 as ops

    conv = target.get_node()
    if conv.get_type_name() != "Convolution" or target.get_index() != 0:
        return False
    weights = _constant_array(conv.input_value(1))
    if weights is None or weights.ndim != 4 or weights.shape[1] != len(channels):
        return False
    width = source.get_partial_shape()[1].get_length()
    wide = np.zeros((weights.shape[0], width, *weights.shape[2:]), weights.dtype)
    wide[:, channels] = weights
    target.replace_source_output(source)
    conv.input(1).replace_source_output(ops.constant(wide).output(0))
    return True


def _constant_array(value: Any) -> np.ndarray | None:
    """The array of a Constant output, else None."""
    node = value.get_node()
    return np.array(node.get_data()) if node.get_type_name() == "Constant" else None


def _constant(value: Any) -> np.ndarray | None:
    """The values of an output known before run time (a Constant, or a shape computation
    whose bounds the converter pinned to one value), else None."""
    array = _constant_array(value)
    if array is not None:
        return array.reshape(-1)
    tensor = value.get_tensor()
    low, high = tensor.get_lower_value(), tensor.get_upper_value()
    if low is None or high is None or low.size == 0 or not np.array_equal(low.data, high.data):
        return None
    return np.asarray(low.data).reshape(-1)


def _channel_parts(node: Any, width: int) -> list[np.ndarray] | None:
    """For a Split, VariadicSplit or Slice of a 4-D tensor's ``width`` channels along axis 1:
    the channel indices each of its outputs takes; None for any other node."""
    kind = node.get_type_name()
    channels = np.arange(width)
    if kind == "Slice":
        start, stop, step, axes = (_constant(node.input_value(i)) for i in (1, 2, 3, 4))
        if any(v is None or len(v) != 1 for v in (start, stop, step, axes)) or axes[0] % 4 != 1:
            return None
        return [channels[int(start[0]) : int(stop[0]) : int(step[0])]]
    if kind not in ("Split", "VariadicSplit"):
        return None
    axis = _constant(node.input_value(1))
    if axis is None or int(axis[0]) % 4 != 1:  # axis 1 of 4, or -3
        return None
    widths = [node.get_output_partial_shape(k)[1] for k in range(node.get_output_size())]
    if any(w.is_dynamic for w in widths):
        return None
    edges = np.cumsum([0] + [w.get_length() for w in widths])
    return [channels[edges[k] : edges[k + 1]] for k in range(len(widths))]


def shuffles_to_selections(model: Any) -> int:
    """Replace every channel shuffle of the OpenVINO ``model`` (reshape -> transpose -> reshape)
    by one-hot 1x1 convolutions: one per part where a channel split or slice follows (which
    goes too), one permutation for any other consumer; a part whose one consumer is a
    convolution with constant weights goes into it directly instead, its weights widened with
    zeros for the channels it does not take. The same values; the number replaced.

    The CPU plugin ran ShuffleNet's 16 shuffles as uint8 ShuffleChannels at 1 GB/s (3.2 of 8.2
    ms at 513x513, 2 threads, Xeon with AMX) and its splits in a reference kernel; with
    selections everywhere the network took 6.0 ms, with the widened convolutions 4.8 ms."""
    replaced = 0
    for source, last, groups in _shuffles(model):
        width = source.get_partial_shape()[1].get_length()
        order = np.arange(width).reshape(groups, width // groups).T.reshape(-1)
        name = last.get_friendly_name()
        permuted = None
        for target in list(last.output(0).get_target_inputs()):
            consumer = target.get_node()
            parts = _channel_parts(consumer, width)
            if parts is None:
                if permuted is None:
                    permuted = _selection(source, order, name)
                target.replace_source_output(permuted.output(0))
                continue
            for k, part in enumerate(parts):
                downstream = list(consumer.output(k).get_target_inputs())
                if len(downstream) == 1 and _widen_into(downstream[0], source, order[part]):
                    continue  # the next convolution selects the part itself
                label = f"{consumer.get_friendly_name()}/{k}"
                chosen = _selection(source, order[part], label)
                for each in downstream:
                    each.replace_source_output(chosen.output(0))
        replaced += 1
    if replaced:
        model.validate_nodes_and_infer_types()
    return replaced


def _feeds_integer(node: Any) -> bool:
    """Whether a uint8 quantizer on ``node``'s output makes it integer: a ReLU, or one of the
    one-hot selections of a ReLU concat (non-negative too)."""
    return node.get_type_name() == "Relu" or node.get_friendly_name().endswith(SELECT_SUFFIX)


def concat_feeders(model: Any) -> list[str]:
    """Names of the ReLUs and channel selections entering a concat whose other inputs are
    integer already (slices of a concat): the concats a uint8 quantizer per feeder makes
    integer. A concat with any other input (an upsampled map, say) stays float and gets none."""
    names: list[str] = []
    for node in model.get_ordered_ops():
        if node.get_type_name() != "Concat":
            continue
        sources = [node.input_value(i).get_node() for i in range(node.get_input_size())]
        feeders = [s for s in sources if _feeds_integer(s)]
        others = {s.get_type_name() for s in sources if not _feeds_integer(s)}
        if feeders and others <= _PASS_THROUGH:
            names += [s.get_friendly_name() for s in feeders]
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
    """Put an unsigned 8-bit quantizer over [0, max] between each named feeder (ReLU or channel
    selection) of the quantized ``model`` and the concats it enters; the number placed."""
    from openvino import opset13 as ops

    nodes = {n.get_friendly_name(): n for n in model.get_ordered_ops()}
    placed = 0
    for name, top in maxima.items():
        feeder = nodes.get(name)
        if feeder is None or top <= 0:
            continue
        targets = feeder.output(0).get_target_inputs()
        concats = [t for t in targets if t.get_node().get_type_name() == "Concat"]
        low, high = ops.constant(np.float32(0.0)), ops.constant(np.float32(top))
        quantizer = ops.fake_quantize(feeder.output(0), low, high, low, high, 256)
        for target in concats:
            target.replace_source_output(quantizer.output(0))
        placed += 1
    if placed:
        model.validate_nodes_and_infer_types()
    return placed


def _per_channel(value: Any) -> bool:
    """Whether ``value`` is a 4-D tensor of one value per channel (static 1 x 1 spatial)."""
    shape = value.get_partial_shape()
    if shape.rank.is_dynamic or shape.rank.get_length() != 4:
        return False
    return all(shape[i].is_static and shape[i].get_length() == 1 for i in (2, 3))


def float_channel_gates(model: Any) -> int:
    """Take the quantizer off the gate of every multiply of a feature map by a per-channel gate
    (a squeeze-and-excitation block's, LR-ASPP's head's) in the quantized ``model``; the
    number of gates now float."""
    freed = 0
    for node in model.get_ordered_ops():
        if node.get_type_name() != "Multiply":
            continue
        inputs = [node.input_value(0), node.input_value(1)]
        for gate, other in ((0, 1), (1, 0)):
            quantizer = inputs[gate].get_node()
            if (
                quantizer.get_type_name() == "FakeQuantize"
                and _per_channel(inputs[gate])
                and not _per_channel(inputs[other])
            ):
                node.input(gate).replace_source_output(quantizer.input_value(0))
                freed += 1
    if freed:
        model.validate_nodes_and_infer_types()
    return freed
