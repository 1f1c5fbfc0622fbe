"""Graph surgery on exported fast graphs (ONNX): folding the input normalisation into the
first convolution, an integer classifier for the int8 graph, and finding the narrow
high-resolution convolutions that stay float."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper, numpy_helper

from atrous.card import ModelCard, onnx_card, write_onnx_card
from atrous.fastpath.modules import INPUT_NAME

__all__ = ["fold_input_normalization", "integer_classifier", "narrow_high_resolution_convs"]


def integer_classifier(proto: onnx.ModelProto) -> bool:
    """Run the float 1x1 classifier of a quantized fast graph on its uint8 input, in place.

    ``DequantizeLinear -> Conv`` becomes ``Transpose(uint8 to NHWC) -> MatMulIntegerToFloat ->
    Transpose(logits to NCHW)`` (int8 weights, one scale per class; ONNX Runtime runs the
    quantized layers in NHWC, so the first transpose cancels against its own and the second
    moves only the small logit map). The logits are exact int32 sums rescaled to float, so
    they do not tie as uint8 logits would, and the graph skips the float copy of the head's
    output and the blocked-layout reorders around a float convolution (~0.6 ms at 513x513,
    measured). Returns whether the pattern was found.
    """
    nodes = list(proto.graph.node)
    producer = {o: n for n in nodes for o in n.output}
    init = {i.name: i for i in proto.graph.initializer}
    conv = next(
        (n for n in nodes if n.op_type == "Conv" and n.name.startswith("/classifier/")), None
    )
    if conv is None or len(conv.input) < 2 or conv.input[1] not in init:
        return False
    dq = producer.get(conv.input[0])
    if dq is None or dq.op_type != "DequantizeLinear":
        return False
    if any(a.name == "group" and a.i != 1 for a in conv.attribute):
        return False
    weight = numpy_helper.to_array(init[conv.input[1]]).astype(np.float64)
    if weight.shape[2:] != (1, 1) or sum(dq.output[0] in n.input for n in nodes) != 1:
        return False
    classes = weight.shape[0]
    bias = (
        numpy_helper.to_array(init[conv.input[2]]).astype(np.float32)
        if len(conv.input) > 2 and conv.input[2]
        else np.zeros(classes, np.float32)
    )
    _replace_classifier(proto, nodes, dq, conv, weight, bias)
    return True


def _replace_classifier(
    proto: onnx.ModelProto,
    nodes: list[onnx.NodeProto],
    dq: onnx.NodeProto,
    conv: onnx.NodeProto,
    weight: np.ndarray,
    bias: np.ndarray,
) -> None:
    """Swap ``dq -> conv`` (the classifier) for the integer MatMul between two transposes."""
    w = weight[:, :, 0, 0]
    w_scale = np.maximum(np.abs(w).max(axis=1), 1e-12) / 127.0
    w_int8 = np.clip(np.rint(w / w_scale[:, None]), -127, 127).astype(np.int8)
    name = "/classifier/integer"
    new_init = [
        numpy_helper.from_array(np.ascontiguousarray(w_int8.T), f"{name}/weight"),
        numpy_helper.from_array(w_scale.astype(np.float32), f"{name}/weight_scale"),
        numpy_helper.from_array(bias, f"{name}/bias"),
    ]
    zero_point = dq.input[2] if len(dq.input) > 2 else ""
    new_nodes = [
        helper.make_node(
            "Transpose", [dq.input[0]], [f"{name}/nhwc"], f"{name}/Transpose", perm=[0, 2, 3, 1]
        ),
        # ONNX Runtime's contrib op: uint8 x int8 products summed in int32, rescaled per class
        # and biased in one pass
        helper.make_node(
            "MatMulIntegerToFloat",
            [
                f"{name}/nhwc",
                f"{name}/weight",
                dq.input[1],
                f"{name}/weight_scale",
                zero_point,
                "",
                f"{name}/bias",
            ],
            [f"{name}/logits_nhwc"],
            f"{name}/MatMulIntegerToFloat",
            domain="com.microsoft",
        ),
        helper.make_node(
            "Transpose",
            [f"{name}/logits_nhwc"],
            [conv.output[0]],
            f"{name}/Transpose_logits",
            perm=[0, 3, 1, 2],
        ),
    ]
    if not any(o.domain == "com.microsoft" for o in proto.opset_import):
        proto.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    at = nodes.index(dq)
    kept = [n for n in nodes if n not in (dq, conv)]
    kept[at:at] = new_nodes
    del proto.graph.node[:]
    proto.graph.node.extend(kept)
    used = {i for n in kept for i in n.input}
    keep_init = [i for i in proto.graph.initializer if i.name in used]
    del proto.graph.initializer[:]
    proto.graph.initializer.extend(keep_init + new_init)


def fold_input_normalization(proto: onnx.ModelProto) -> bool:
    """Fold the input normalisation (``/normalize/Conv``: a per-channel scale and shift) into the
    first convolution, in place; return whether it was folded.

    Saves a full-resolution float pass (~0.6 ms at 513x513). The first convolution's zero
    padding meant "the mean colour" in normalised units; in pixel values it has to be that
    colour, so the convolution loses its padding and the card (in the graph's metadata) asks
    the host for a ``border`` of the mean colour (rounded to whole pixel values, within 0.01 of
    the exact normalised 0), which the Segmenter writes while it pads the image anyway. Used
    by the int8 fast graph; the fp32 fast graph stays bit-exact.
    """
    graph = proto.graph
    initializers = {i.name: i for i in graph.initializer}
    card = onnx_card(proto)

    def array(name: str) -> np.ndarray | None:
        found = initializers.get(name)
        return None if found is None else numpy_helper.to_array(found).astype(np.float64)

    norm = next((n for n in graph.node if n.name == "/normalize/Conv"), None)
    cast = next((n for n in graph.node if norm is not None and n.output[0] == norm.input[0]), None)
    users = [n for n in graph.node if norm is not None and norm.output[0] in n.input]
    convs = [n for n in users if n.op_type == "Conv"]
    if card is None or cast is None or cast.op_type != "Cast" or len(convs) != 1:
        return False
    if any(n.op_type not in ("Conv", "Shape") for n in users):
        return False
    conv = convs[0]
    attributes = {a.name: a for a in conv.attribute}
    pads = list(attributes["pads"].ints) if "pads" in attributes else [0, 0, 0, 0]
    weight, scale, shift = array(conv.input[1]), array(norm.input[1]), array(norm.input[2])
    grouped = "group" in attributes and attributes["group"].i != 1
    explicit = "auto_pad" not in attributes or attributes["auto_pad"].s in (b"", b"NOTSET")
    if grouped or not explicit or len(pads) != 4 or len(set(pads)) != 1 or weight is None:
        return False  # the host border is the same width on every side
    bias = array(conv.input[2]) if len(conv.input) > 2 else np.zeros(weight.shape[0])
    if scale is None or shift is None or bias is None:
        return False
    scale, shift = scale.reshape(-1), shift.reshape(-1)
    folded_bias = bias + (weight * shift.reshape(1, -1, 1, 1)).sum(axis=(1, 2, 3))
    names = (f"{conv.name}/folded_weight", f"{conv.name}/folded_bias")
    graph.initializer.extend(
        [
            numpy_helper.from_array(
                (weight * scale.reshape(1, -1, 1, 1)).astype(np.float32), names[0]
            ),
            numpy_helper.from_array(folded_bias.astype(np.float32), names[1]),
        ]
    )
    del conv.input[1:]
    conv.input.extend(names)
    if pads[0]:
        _ask_for_border(proto, card, pads[0], scale, shift)
        del attributes["pads"].ints[:]
        attributes["pads"].ints.extend([0, 0, 0, 0])
    conv.input[0] = cast.output[0]
    graph.node.remove(norm)
    return True


def _ask_for_border(
    proto: onnx.ModelProto, card: ModelCard, border: int, scale: np.ndarray, shift: np.ndarray
) -> None:
    """Record in the graph's card the host border the unpadded first convolution needs: the
    colour whose normalised value is 0, in RGB pixels (the host writes RGB)."""
    colour = np.clip(np.rint(-shift / scale), 0, 255)  # the network's channel order
    normalisation = card.fast_path.normalisation if card.fast_path is not None else None
    if normalisation is not None and normalisation.channel_order == "BGR":
        colour = colour[::-1]  # the graph swaps the channels; the host writes RGB pixels
    card.preprocessing = card.preprocessing.model_copy(
        update={"border": border, "pad_value": tuple(float(c) for c in colour)}
    )
    write_onnx_card(proto, card)


def narrow_high_resolution_convs(
    source: str | Path,
    sample: np.ndarray,
    min_fraction: float = 0.5,
    max_channels: int = 32,
    border: int = 0,
) -> list[str]:
    """Names of the Conv nodes whose output is at least ``min_fraction`` of the image's
    height with at most ``max_channels`` channels, found by running ``sample`` (an image with
    ``border`` pixels around it) through the float graph with every Conv output exposed (any
    backbone, whatever its node names)."""
    proto = onnx.load(str(source))
    convs = [n for n in proto.graph.node if n.op_type == "Conv"]
    known = {o.name for o in proto.graph.output}
    for node in convs:
        if node.output[0] not in known:
            proto.graph.output.append(onnx.ValueInfoProto(name=node.output[0]))
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    outputs = dict(zip(names, session.run(names, {INPUT_NAME: sample[:1]}), strict=True))
    height = sample.shape[2] - 2 * border  # planar pixels
    return [
        n.name
        for n in convs
        if outputs[n.output[0]].shape[-2] >= min_fraction * height
        and outputs[n.output[0]].shape[1] <= max_channels
    ]
