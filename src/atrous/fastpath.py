"""The fast CPU path: one graph from uint8 pixels to low-resolution logits, run by OpenVINO
(int8 IR) or ONNX Runtime (ONNX), and a sparse upsample + argmax on the host.

What it removes from the plain path (network in PyTorch eager, float NCHW input, 21-channel logits
upsampled to full resolution, argmax in Python):

- eager PyTorch: the engines fold BatchNorm, fuse Conv+ReLU6 and run blocked kernels;
  ``export_fast_int8`` quantizes the network statically: for OpenVINO (.xml, the fastest here:
  its CPU plugin has int8 depthwise kernels) with NNCF, for ONNX Runtime (.onnx) as QDQ;
- kernel remainder loops: internal channel groups (MobileNetV2's 72 hidden channels at width
  0.5) are padded with zero channels to multiples of 16, the SIMD block (exact; see
  :mod:`atrous.quantize.channel_padding`);
- float preprocessing in Python: the graph takes uint8 RGB pixels. The ONNX Runtime graph
  takes them planar (N, 3, H, W): the host de-interleaves the decoded image while it pads it, in
  one pass that costs less than ONNX Runtime's in-graph transpose; the OpenVINO IR takes them
  channels-last, as decoded (its plugin merges the transpose into its first reorder). The int8
  graphs fold mean/std into their first convolution;
- the broadcast image-pooling map of the ASPP head: its features enter the projection as a
  per-image bias (``PooledBiasASPP``, exact), so nothing is broadcast or concatenated;
- the float classifier of the int8 ONNX Runtime graph: one integer matrix product on the head's
  uint8 output with float logits out (``integer_classifier``);
- the full-resolution logit upsample: the graph ends at the logits (1/16 of the input for an
  OS16 model); the Segmenter computes labels at 1/``label_stride`` of the input with
  ``atrous.upsample.sparse_upsample_argmax``, which interpolates the class scores only where
  the four low-resolution neighbours disagree (the same labels as a full bilinear resize and
  argmax), and enlarges them by an exact integer repeat. ``label_stride=1`` gives the exact
  full-resolution labels.

``export_fast_onnx`` writes the graph with its model card; ``fast_segmenter`` builds (and caches)
it for a checkpoint or zoo name and returns a ready Segmenter.
"""

from __future__ import annotations

import hashlib
import itertools
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from torch import nn

from atrous._atomic import atomic_path
from atrous.card import ModelCard
from atrous.errors import ModelError
from atrous.models.aspp import ASPP, PooledBiasASPP
from atrous.quantize.channel_padding import CHANNEL_MULTIPLE, pad_channels
from atrous.runtimes import CARD_KEY

__all__ = [
    "FastGraph",
    "Normalize",
    "fast_card",
    "export_fast_onnx",
    "quantize_fast_onnx",
    "export_fast_int8",
    "export_fast",
    "narrow_high_resolution_convs",
    "fold_input_normalization",
    "integer_classifier",
    "FastExport",
    "fast_segmenter",
    "fast_engine",
    "LABEL_STRIDES",
    "DEFAULT_LABEL_STRIDE",
]

LABEL_STRIDES = (1, 2, 4, 8)
# labels at 1/2: a quarter of the upsample+argmax work for ~0.2 mIoU on ideal OS16 logits
# (1/4 costs ~0.8, over the 0.5-point budget); see benchmarks/results/fast_path.md
DEFAULT_LABEL_STRIDE = 2
FAST_GRAPH_VERSION = 4  # bump when the graph export changes what a cached graph computes
FAST_SUFFIXES = {".xml": "openvino", ".onnx": "onnxruntime"}
INPUT_NAME = "pixels"
OUTPUT_NAME = "logits"


class Normalize(nn.Module):
    """uint8 planar RGB pixels (N, 3, H, W) -> float in the card's channel order, mean and std."""

    def __init__(self, card: ModelCard) -> None:
        super().__init__()
        pre = card.preprocessing
        std = 255.0 * np.asarray(pre.std, np.float32)
        mean = 255.0 * np.asarray(pre.mean, np.float32)
        self.order = [2, 1, 0] if pre.channel_order == "BGR" else [0, 1, 2]
        shift = -mean / std  # mean and std are in the network's channel order
        self.register_buffer("scale", torch.from_numpy(1.0 / std).reshape(1, 3, 1, 1))
        self.register_buffer("shift", torch.from_numpy(shift).reshape(1, 3, 1, 1))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = pixels
        if self.order != [0, 1, 2]:
            x = x[:, self.order]
        # a per-channel 1x1 convolution rather than broadcast Mul + Add: ONNX Runtime runs it
        # with its blocked conv kernels, where the broadcast pair can cost 10x more (seen
        # around the int8 graph's first QuantizeLinear)
        weight = self.scale.reshape(3, 1, 1, 1)
        return F.conv2d(x.float(), weight, self.shift.reshape(3), groups=3)


class FastGraph(nn.Module):
    """uint8 planar RGB pixels -> normalise -> DeepLab -> logits at the network's resolution.

    The upsample and argmax run on the host (``atrous.upsample.sparse_upsample_argmax``), which
    interpolates the class scores only near class boundaries, at the label stride the card
    records (``fast_card``). An ASPP head runs as ``PooledBiasASPP`` (the same function).

    Args:
        model: a DeepLab (backbone, head, optional decoder, classifier).
        card: its card; mean/std and channel order move into the graph.
    """

    def __init__(self, model: nn.Module, card: ModelCard) -> None:
        super().__init__()
        self.model = model.eval()
        self.normalize = Normalize(card)
        # the image-pooling branch as a per-image bias of the projection: no broadcast map,
        # no concat (the int8 MobileNetV2 head took 0.96 instead of 1.72 ms at 513x513)
        head = model.head
        self.head = PooledBiasASPP(head) if isinstance(head, ASPP) else head

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = self.normalize(pixels)
        m = self.model
        low, _, out = m.backbone(x)
        y = self.head(out)
        if m.decoder is not None:
            y = m.decoder(y, low)
        return m.classifier(y)


def fast_card(
    card: ModelCard,
    label_stride: int,
    precision: str = "fp32",
    channel_multiple: int = CHANNEL_MULTIPLE,
) -> ModelCard:
    """The card of a fast graph: raw uint8 RGB planar input, low-resolution logits out, the
    settings (label stride, precision, channel padding, original normalisation) in its notes.

    Identity normalisation (mean 0, std 1/255) tells the Segmenter to pass pixels through; the
    padding value becomes the RGB pixel closest to the original one (for a padding of 0, the
    mean colour).
    """
    if label_stride not in LABEL_STRIDES:
        raise ModelError(f"label_stride must be one of {LABEL_STRIDES}, got {label_stride}")
    pre = card.preprocessing
    mean, std = 255.0 * np.asarray(pre.mean), 255.0 * np.asarray(pre.std)
    colour = np.clip(np.rint(mean + std * np.asarray(pre.pad_value)), 0, 255)
    if pre.channel_order == "BGR":
        colour = colour[::-1]  # the card's values are in the network's channel order
    pad_pixel = tuple(float(c) for c in colour)
    new = card.model_copy(deep=True)
    new.preprocessing = pre.model_copy(
        update={
            "mean": (0.0, 0.0, 0.0),
            "std": (1 / 255, 1 / 255, 1 / 255),
            "channel_order": "RGB",
            "layout": "NCHW",
            "pad_value": pad_pixel,
            "pad_multiple": int(np.lcm(pre.pad_multiple, label_stride)),
        }
    )
    new.output = "logits"  # at the network's resolution; the Segmenter upsamples sparsely
    new.provenance.notes = {
        **new.provenance.notes,
        "fast_path": {
            "label_stride": label_stride,
            "tail": "host: sparse bilinear upsample + argmax (atrous.upsample)",
            "precision": precision,
            "channel_multiple": channel_multiple,
            "input": "uint8 RGB planar (N, 3, H, W) pixels",
            "normalisation": {
                "mean": list(pre.mean),
                "std": list(pre.std),
                "channel_order": pre.channel_order,
            },
        },
    }
    return new


def export_fast_onnx(
    model: nn.Module,
    card: ModelCard,
    path: str | Path,
    *,
    label_stride: int = DEFAULT_LABEL_STRIDE,
    opset: int = 17,
    sample_size: tuple[int, int] = (129, 129),
    channel_multiple: int = CHANNEL_MULTIPLE,
) -> Path:
    """Write the fast graph of ``model`` to ``path`` (dynamic batch/height/width) with its card.

    Internal channel groups are padded with zero channels to multiples of ``channel_multiple``
    (1: as they are), which the CPU kernels run faster; the logits are the same. ``model`` is
    not modified.
    """
    import copy

    from atrous.export.onnx import set_metadata

    path = Path(path)
    written = fast_card(card, label_stride, channel_multiple=channel_multiple)
    if channel_multiple > 1:
        model = copy.deepcopy(model)
        pad_channels(model, channel_multiple)
    graph = FastGraph(model, card).eval()
    m = written.preprocessing.pad_multiple  # a multiple of the label stride
    h, w = (-(-s // m) * m for s in sample_size)
    sample = torch.zeros(1, 3, h, w, dtype=torch.uint8)
    with atomic_path(path) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(
                graph,
                (sample,),
                str(tmp),
                dynamo=False,
                opset_version=opset,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_axes={
                    INPUT_NAME: {0: "batch", 2: "height", 3: "width"},
                    OUTPUT_NAME: {0: "batch", 2: "logit_height", 3: "logit_width"},
                },
            )
        except Exception as exc:
            raise ModelError(
                f"{path}: fast-path export failed: {str(exc).splitlines()[0]}"
            ) from exc
        proto = onnx.load(str(tmp))
        set_metadata(proto, {CARD_KEY: written.to_json()})
        onnx.save(proto, str(tmp))
    return path


def fast_engine(path: str | Path) -> str:
    """The engine an int8 fast graph at ``path`` is built for, from its suffix: OpenVINO IR
    (.xml) or ONNX Runtime (.onnx)."""
    suffix = Path(path).suffix
    if suffix not in FAST_SUFFIXES:
        raise ModelError(f"{path}: a fast graph is written as .xml (OpenVINO) or .onnx")
    return FAST_SUFFIXES[suffix]


def quantize_fast_onnx(
    source: str | Path,
    path: str | Path,
    calibration: list[np.ndarray],
    card: ModelCard,
    *,
    preprocess: bool = True,
) -> Path:
    """Static int8 of a fast graph (ONNX at ``source``) for the engine ``path`` names.

    .onnx: QDQ for ONNX Runtime (uint8 activations, per-channel int8 weights); .xml: OpenVINO
    IR quantized by NNCF (symmetric activations, per-channel weights), whose CPU plugin runs
    the depthwise layers in int8 too. ``calibration``: uint8 planar batches preprocessed with
    ``card``, the fast graph's card (its label stride is recorded with precision int8); they
    get the border that folding the input normalisation asks for. ``preprocess`` runs ONNX
    Runtime's optimisation and shape-inference pre-pass first (ONNX Runtime only).
    """
    engine = fast_engine(path)
    import tempfile

    from atrous.export.onnx import proto_card

    proto = onnx.load(str(source))
    border = 0
    with tempfile.TemporaryDirectory(prefix="atrous-fast-fold-") as tmp:
        if fold_input_normalization(proto):
            source = Path(tmp) / "folded.onnx"
            onnx.save(proto, str(source))
            pre = proto_card(proto).preprocessing  # folding only happens with a card
            border, fill = pre.border, np.asarray(pre.pad_value, np.uint8)
            if border:
                calibration = [_bordered(b, border, fill) for b in calibration]
        if engine == "openvino":
            return _quantize_fast_openvino(source, Path(path), calibration, card)
        return _quantize_fast(proto, source, path, calibration, card, preprocess, border)


def _bordered(batch: np.ndarray, border: int, fill: np.ndarray) -> np.ndarray:
    """A planar ``batch`` with ``border`` pixels of ``fill`` around each image, as the Segmenter
    writes them (``place_on_canvas``)."""
    from atrous.segmenter import place_on_canvas

    n, c, h, w = batch.shape
    out = np.empty((n, c, h + 2 * border, w + 2 * border), batch.dtype)
    for canvas, image in zip(out, batch, strict=True):
        place_on_canvas(canvas, image.transpose(1, 2, 0), border, fill, channels_first=True)
    return out


def _quantize_fast(
    proto: onnx.ModelProto,
    source: Path | str,
    path: str | Path,
    calibration: list[np.ndarray],
    card: ModelCard,
    preprocess: bool,
    border: int = 0,
) -> Path:
    """Quantize the (possibly folded) fast graph ``proto`` stored at ``source``, keeping the
    input, the tail and the narrow high-resolution layers float; ``calibration`` carries the
    host ``border`` that folding asked for."""
    from atrous.quantize.ptq import quantize_onnx

    float_nodes = [n.name for n in proto.graph.node if n.name.startswith("/normalize/")]
    # the logits stay float: uint8 logits tie between classes near boundaries, which flips the
    # argmax; the classifier is a tiny 1x1 convolution at the network's resolution
    float_nodes += [n.name for n in proto.graph.node if n.name.startswith("/classifier/")]
    # narrow layers at 1/2 resolution (the stem, the first block): few channels over many
    # pixels, where ONNX Runtime's int8 kernels lose to its float ones (~10% of the network
    # at 513x513, measured; wider 1/2-resolution layers still gain from int8)
    float_nodes += narrow_high_resolution_convs(source, calibration[0], border=border)
    fast_notes = card.provenance.notes.get("fast_path", {})
    stride = int(fast_notes.get("label_stride", DEFAULT_LABEL_STRIDE))
    quantize_onnx(
        source,
        calibration,
        path,
        num=len(calibration),
        nodes_to_exclude=float_nodes,
        preprocess=preprocess,
        notes={"fast_path": {**fast_notes, "precision": "int8", "label_stride": stride}},
    )
    quantized = onnx.load(str(path))
    if integer_classifier(quantized):
        with atomic_path(path) as tmp:
            onnx.save(quantized, str(tmp))
    return path


def _quantize_fast_openvino(
    source: Path, path: Path, calibration: list[np.ndarray], card: ModelCard
) -> Path:
    """The (possibly folded) fast graph at ``source`` quantized by NNCF as OpenVINO IR.

    Everything is int8 but the logits: unlike ONNX Runtime's, the CPU plugin's int8 kernels
    beat its float ones on the narrow 1/2-resolution layers too, and its classifier takes
    uint8 features to float logits (none are rounded to uint8, so no argmax ties). The IR
    takes channels-last pixels; ``calibration`` stays planar (NNCF runs the planar model).
    """
    from atrous.quantize.nncf_ptq import quantize_openvino

    fast_notes = card.provenance.notes.get("fast_path", {})
    stride = int(fast_notes.get("label_stride", DEFAULT_LABEL_STRIDE))
    notes = {
        "fast_path": {
            **fast_notes,
            "precision": "int8",
            "label_stride": stride,
            "engine": "openvino",
            "input": "uint8 RGB (N, H, W, 3) pixels",
        }
    }
    # channels-last input: the decoded image is copied as it is, and the plugin's own first
    # reorder takes the transpose (planar input cost ~1 ms more at 513x513, host and graph)
    return quantize_openvino(
        source, calibration, path, preset="performance", notes=notes, input_layout="NHWC"
    )


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
    from onnx import helper, numpy_helper

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
    return True


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
    from onnx import numpy_helper

    from atrous.export.onnx import proto_card, set_metadata

    graph = proto.graph
    initializers = {i.name: i for i in graph.initializer}
    card = proto_card(proto)

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
        colour = np.clip(np.rint(-shift / scale), 0, 255)  # the network's channel order
        normalisation = card.provenance.notes.get("fast_path", {}).get("normalisation", {})
        if normalisation.get("channel_order") == "BGR":
            colour = colour[::-1]  # the graph swaps the channels; the host writes RGB pixels
        card.preprocessing = card.preprocessing.model_copy(
            update={"border": pads[0], "pad_value": tuple(float(c) for c in colour)}
        )
        set_metadata(proto, {CARD_KEY: card.to_json()})
        del attributes["pads"].ints[:]
        attributes["pads"].ints.extend([0, 0, 0, 0])
    conv.input[0] = cast.output[0]
    graph.node.remove(norm)
    return True


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
    import onnxruntime as ort

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


def export_fast_int8(
    model: nn.Module,
    card: ModelCard,
    path: str | Path,
    images: Iterable[Any],
    *,
    label_stride: int = DEFAULT_LABEL_STRIDE,
    num: int = 32,
    bias_correction: bool = True,
    channel_multiple: int = CHANNEL_MULTIPLE,
) -> Path:
    """Write the int8 fast graph of ``model``: BN folded and biases corrected for int8 weight
    rounding in PyTorch, exported as a fast graph, then statically quantized with ``num``
    calibration images (dataset samples or RGB arrays) preprocessed as at inference, for the
    engine ``path`` names (.xml: OpenVINO, .onnx: ONNX Runtime; see ``quantize_fast_onnx``).
    ``channel_multiple``: see ``export_fast_onnx`` (1 keeps the model's channel counts).

    ``model`` is not modified (a copy is prepared).
    """
    import copy
    import tempfile

    from atrous.quantize.pipeline import prepare_for_int8

    fast_engine(path)  # an unknown suffix fails before any work
    from atrous.quantize.ptq import calibration_batches

    images = list(itertools.islice(iter(images), num))
    float_batches = calibration_batches(images, card, num)
    net = prepare_for_int8(
        copy.deepcopy(model).eval(),
        float_batches,
        granularity="per-channel",
        equalize=False,
        bias_correction=bias_correction,
    )
    fcard = fast_card(card, label_stride, channel_multiple=channel_multiple)
    pixel_batches = calibration_batches(images, fcard, num)  # uint8 planar, as the graph takes
    with tempfile.TemporaryDirectory(prefix="atrous-fast-int8-") as tmp:
        float_path = export_fast_onnx(
            net,
            card,
            Path(tmp) / "fast_fp32.onnx",
            label_stride=label_stride,
            channel_multiple=channel_multiple,
        )
        return quantize_fast_onnx(float_path, path, pixel_batches, fcard)


@dataclass
class FastExport:
    """What ``export_fast`` wrote and how faithful it is to the float PyTorch path."""

    path: Path
    card: ModelCard
    precision: str
    label_stride: int
    engine: str  # the runtime the file is built for: openvino (.xml) or onnxruntime (.onnx)
    agreement: float  # pixel agreement with the float PyTorch Segmenter on held-out images
    images_checked: int


def export_fast(
    source: str | Path,
    out: str | Path,
    *,
    label_stride: int = DEFAULT_LABEL_STRIDE,
    precision: str = "fp32",
    calibration: Sequence[Any] = (),
    num: int = 32,
    check: int = 8,
    threads: int | None = None,
) -> FastExport:
    """Export the fast graph of a checkpoint or zoo model (fp32, or int8 calibrated on
    ``calibration``) and measure its pixel agreement with the float PyTorch path on ``check``
    held-out images (the calibration items after the first ``num``, else synthetic images).

    ``out`` names the engine: .xml is an int8 OpenVINO IR (the faster build on the Intel CPUs
    measured, see benchmarks/results/fast_path.md), .onnx an fp32 or int8 ONNX Runtime graph.
    """
    from atrous.export.parity import held_out_agreement, synthetic_image
    from atrous.export.pipeline import load_source
    from atrous.quantize.ptq import image_of
    from atrous.runtimes.torch_engine import TorchEngine
    from atrous.segmenter import Segmenter

    if precision not in ("fp32", "int8"):
        raise ModelError(f"precision must be fp32 or int8, got '{precision}'")
    if precision == "int8" and not calibration:
        raise ModelError("an int8 fast graph needs calibration images (--calib DATA)")
    engine = fast_engine(out)
    if engine == "openvino" and precision != "int8":
        raise ModelError(f"{out}: the OpenVINO fast graph is int8; write fp32 as .onnx")
    net, card = load_source(source)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if precision == "int8":
        export_fast_int8(net, card, out, calibration[:num], label_stride=label_stride, num=num)
    else:
        export_fast_onnx(net, card, out, label_stride=label_stride)
    held = [image_of(item) for item in calibration[num : num + check]]
    size = card.preprocessing.size or 257
    held = held or [synthetic_image(size, size, seed=i) for i in range(check)]
    from atrous.runtimes import load_engine

    runner, written = load_engine(out, engine, threads)
    fast = Segmenter(runner, written)
    ref = Segmenter(TorchEngine(net, threads), card)
    rows = held_out_agreement(ref, fast, held).rows
    agreement = float(np.mean([r.agreement for r in rows]))
    return FastExport(out, written, precision, label_stride, engine, agreement, len(held))


def _cache_key(model: nn.Module, card: ModelCard, label_stride: int) -> str:
    """Weights, card, label stride and the graph's layout version: a cached graph that an
    older atrous wrote (before channel padding, or with the BGR normalisation bug) is rebuilt."""
    digest = hashlib.sha256(f"fast-graph-v{FAST_GRAPH_VERSION}".encode())
    digest.update(card.to_json().encode())
    digest.update(str(label_stride).encode())
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


def fast_segmenter(
    model: str | Path | tuple[nn.Module, ModelCard],
    *,
    threads: int | None = None,
    label_stride: int = DEFAULT_LABEL_STRIDE,
    cache_dir: str | Path | None = None,
):
    """A Segmenter on the fast graph of a checkpoint, zoo name or (model, card) pair.

    The graph is exported once into ``cache_dir`` (default ``~/.cache/atrous/fast``), keyed by the
    weights, card and label stride; OpenCV is limited to one thread so that pre/postprocessing
    does not compete with ONNX Runtime's intra-op threads.
    """
    import cv2

    from atrous.runtimes import load_engine
    from atrous.segmenter import Segmenter

    if isinstance(model, tuple):
        net, card = model
    else:
        from atrous.export.pipeline import load_source

        net, card = load_source(model)
    cache = Path(cache_dir) if cache_dir else Path.home() / ".cache" / "atrous" / "fast"
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / f"{card.name}-s{label_stride}-{_cache_key(net, card, label_stride)}.onnx"
    if not path.exists():
        export_fast_onnx(net, card, path, label_stride=label_stride)
    cv2.setNumThreads(1)
    engine, written = load_engine(path, "onnxruntime", threads)
    return Segmenter(engine, written)
