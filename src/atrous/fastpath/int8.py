"""The int8 fast graph: BN folded and biases corrected in PyTorch, exported, then statically
quantized for ONNX Runtime (QDQ, .onnx) or OpenVINO (NNCF, .xml)."""

from __future__ import annotations

import copy
import itertools
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from torch import nn

from atrous._atomic import atomic_path, scratch_directory
from atrous.card import FastPathFacts, ModelCard, onnx_card
from atrous.errors import ModelError
from atrous.fastpath.graph import export_fast_onnx
from atrous.fastpath.modules import DEFAULT_LABEL_STRIDE, fast_card
from atrous.fastpath.rewrite import (
    fold_input_normalization,
    integer_classifier,
    narrow_high_resolution_convs,
)
from atrous.preprocess import place_on_canvas
from atrous.quantize.channel_padding import CHANNEL_MULTIPLE
from atrous.quantize.nncf_ptq import quantize_openvino
from atrous.quantize.pipeline import prepare_for_int8
from atrous.quantize.ptq import calibration_batches, quantize_onnx

__all__ = ["FAST_SUFFIXES", "export_fast_int8", "fast_engine", "quantize_fast_onnx"]

FAST_SUFFIXES = {".xml": "openvino", ".onnx": "onnxruntime"}


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
    proto = onnx.load(str(source))
    border = 0
    with scratch_directory("fast-fold") as tmp:
        if fold_input_normalization(proto):
            source = Path(tmp) / "folded.onnx"
            onnx.save(proto, str(source))
            pre = onnx_card(proto).preprocessing  # folding only happens with a card
            border, fill = pre.border, np.asarray(pre.pad_value, np.uint8)
            if border:
                calibration = [_bordered(b, border, fill) for b in calibration]
        if engine == "openvino":
            return _quantize_fast_openvino(source, Path(path), calibration, card)
        return _quantize_fast(proto, source, path, calibration, card, preprocess, border)


def _int8_facts(card: ModelCard) -> FastPathFacts:
    """The fast-path section of the int8 graph quantized from a graph with ``card``."""
    facts = card.fast_path or FastPathFacts(label_stride=DEFAULT_LABEL_STRIDE)
    return facts.model_copy(update={"precision": "int8"})


def _bordered(batch: np.ndarray, border: int, fill: np.ndarray) -> np.ndarray:
    """A planar ``batch`` with ``border`` pixels of ``fill`` around each image, as preprocessing
    writes them (``place_on_canvas``)."""
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
    float_nodes = [n.name for n in proto.graph.node if n.name.startswith("/normalize/")]
    # the logits stay float: uint8 logits tie between classes near boundaries, which flips the
    # argmax; the classifier is a tiny 1x1 convolution at the network's resolution
    float_nodes += [n.name for n in proto.graph.node if n.name.startswith("/classifier/")]
    # narrow layers at 1/2 resolution (the stem, the first block): few channels over many
    # pixels, where ONNX Runtime's int8 kernels lose to its float ones (~10% of the network
    # at 513x513, measured; wider 1/2-resolution layers still gain from int8)
    float_nodes += narrow_high_resolution_convs(source, calibration[0], border=border)
    quantize_onnx(
        source,
        calibration,
        path,
        num=len(calibration),
        nodes_to_exclude=float_nodes,
        preprocess=preprocess,
        fast_path=_int8_facts(card),
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
    facts = _int8_facts(card).model_copy(
        update={"engine": "openvino", "input": "uint8 RGB (N, H, W, 3) pixels"}
    )
    # channels-last input: the decoded image is copied as it is, and the plugin's own first
    # reorder takes the transpose (planar input cost ~1 ms more at 513x513, host and graph)
    return quantize_openvino(
        source, calibration, path, preset="performance", fast_path=facts, input_layout="NHWC"
    )


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
    fast_engine(path)  # an unknown suffix fails before any work
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
    with scratch_directory("fast-int8") as tmp:
        float_path = export_fast_onnx(
            net,
            card,
            Path(tmp) / "fast_fp32.onnx",
            label_stride=label_stride,
            channel_multiple=channel_multiple,
        )
        return quantize_fast_onnx(float_path, path, pixel_batches, fcard)
