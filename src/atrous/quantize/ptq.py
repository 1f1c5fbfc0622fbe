"""Static int8 post-training quantization of an ONNX model (ONNX Runtime QDQ, or OpenVINO NNCF).

Calibration images go through the model card's own preprocessing (``atrous.preprocess``), so the
ranges seen at calibration are those seen at inference (pitfall 2). Defaults follow what is fast
on an AVX2 CPU without VNNI: uint8 activations with per-channel int8 weights.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import onnx
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

from atrous._atomic import atomic_path, scratch_directory
from atrous.card import (
    FastPathFacts,
    ModelCard,
    onnx_card,
    read_onnx_card,
    set_onnx_metadata,
    write_onnx_card,
)
from atrous.errors import InputError, ModelError
from atrous.preprocess import image_of, preprocess
from atrous.quantize.nncf_ptq import quantize_openvino

__all__ = [
    "CALIBRATION_METHODS",
    "BatchReader",
    "calibration_batches",
    "image_of",
    "quantize_onnx",
    "quantizable_nodes",
    "copy_metadata",
    "preprocess_for_quantization",
    "check_settings",
]

Granularity = Literal["per-channel", "per-tensor"]
Activations = Literal["uint8", "int8"]
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
QUANTIZED_OPS = ("Conv", "MatMul", "Gemm")
CALIBRATORS = {
    "minmax": CalibrationMethod.MinMax,
    "entropy": CalibrationMethod.Entropy,
    "percentile": CalibrationMethod.Percentile,
}


def calibration_batches(
    items: Iterable[Any],
    card: ModelCard | None,
    num: int = 100,
    card_source: str | Path | None = None,
) -> list[np.ndarray]:
    """Up to ``num`` preprocessed (1, 3, H, W) float32 batches for calibration.

    ``items`` are dataset samples / RGB images, preprocessed with the card's contract (``card``,
    or the one stored in the ONNX file ``card_source``), or already preprocessed 4-D float
    arrays (used as they are).
    """
    batches: list[np.ndarray] = []
    for item in items:
        if len(batches) >= num:
            break
        if isinstance(item, np.ndarray) and item.ndim == 4:
            # preprocessed: float batches, or uint8 pixel batches for graphs that take pixels
            batches.append(item if item.dtype == np.uint8 else item.astype(np.float32, copy=False))
            continue
        if card is None and card_source is not None:
            card = read_onnx_card(card_source)
        if card is None:
            raise ModelError(
                f"{card_source or 'model'}: no model card (preprocessing) to calibrate from "
                "images; is it an atrous segmentation model?"
            )
        batches.append(preprocess(card, [image_of(item)])[0])
    if not batches:
        raise InputError("calibration data is empty")
    return batches


class BatchReader(CalibrationDataReader):
    """Feeds a list of batches to ONNX Runtime's calibrator, one per ``get_next`` call."""

    def __init__(self, input_name: str, batches: Sequence[np.ndarray]) -> None:
        self.input_name = input_name
        self.batches = list(batches)
        self._index = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._index >= len(self.batches):
            return None
        self._index += 1
        return {self.input_name: self.batches[self._index - 1]}

    def rewind(self) -> None:
        self._index = 0


def _input_name(path: Path) -> str:
    proto = onnx.load(str(path), load_external_data=False)
    initializers = {i.name for i in proto.graph.initializer}
    return next(i.name for i in proto.graph.input if i.name not in initializers)


def quantizable_nodes(path: str | Path) -> list[str]:
    """Names of the nodes ONNX Runtime quantizes (Conv, MatMul, Gemm), in graph order."""
    proto = onnx.load(str(path), load_external_data=False)
    return [n.name for n in proto.graph.node if n.op_type in QUANTIZED_OPS]


def copy_metadata(
    source: str | Path,
    target: str | Path,
    notes: dict[str, Any],
    fast_path: FastPathFacts | None = None,
) -> None:
    """Copy ``source``'s metadata (the model card) into ``target``, adding provenance notes
    (and, for a fast graph, its updated ``fast_path`` section)."""
    src = onnx.load(str(source), load_external_data=False)
    dst = onnx.load(str(target))
    del dst.metadata_props[:]
    set_onnx_metadata(dst, {p.key: p.value for p in src.metadata_props})
    card = onnx_card(src, str(source))
    if card is not None:
        card.provenance.notes = {**card.provenance.notes, **notes}
        card.fast_path = fast_path or card.fast_path
        write_onnx_card(dst, card)
    onnx.save(dst, str(target))


def preprocess_for_quantization(source: Path, target: Path) -> Path:
    """ORT's recommended pre-pass: graph optimisation (folds BN) and shape inference."""
    try:
        quant_pre_process(str(source), str(target), skip_symbolic_shape=False)
    except Exception:  # symbolic inference can fail on dynamic resizes; retry without it
        quant_pre_process(str(source), str(target), skip_symbolic_shape=True)
    return target


def check_settings(granularity: str, activations: str, method: str, engine: str) -> None:
    """InputError naming the first invalid quantization setting."""
    if granularity not in ("per-channel", "per-tensor"):
        raise InputError(f"granularity must be per-channel or per-tensor, got '{granularity}'")
    if activations not in ("uint8", "int8"):
        raise InputError(f"activations must be uint8 or int8, got '{activations}'")
    if method not in CALIBRATION_METHODS:
        raise InputError(f"calibration method must be one of {', '.join(CALIBRATION_METHODS)}")
    if engine not in ("onnxruntime", "openvino"):
        raise InputError(f"quantize engine must be onnxruntime or openvino, got '{engine}'")


def _quantize_static(
    prepared: Path,
    target: Path,
    batches: Sequence[np.ndarray],
    granularity: str,
    activations: str,
    method: str,
    reduce_range: bool,
    nodes_to_exclude: Sequence[str],
    calibration_cache: str | Path | None,
) -> None:
    """ONNX Runtime's static QDQ quantization with the settings atrous uses (int8 weights,
    symmetric; activations uint8 asymmetric or int8 symmetric)."""
    quantize_static(
        str(prepared),
        str(target),
        BatchReader(_input_name(prepared), batches),
        quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QUInt8 if activations == "uint8" else QuantType.QInt8,
        weight_type=QuantType.QInt8,
        per_channel=granularity == "per-channel",
        reduce_range=reduce_range,
        calibrate_method=CALIBRATORS[method],
        nodes_to_exclude=list(nodes_to_exclude),
        extra_options={
            "ActivationSymmetric": activations == "int8",
            "WeightSymmetric": True,
            "CalibMovingAverage": False,
            "CalibTensorRangeSymmetric": False,
        },
        calibration_providers=["CPUExecutionProvider"],
        calibration_cache_path=calibration_cache,
    )


def quantize_onnx(
    model_path: str | Path,
    calib: Iterable[Any],
    out: str | Path,
    *,
    num: int = 100,
    granularity: Granularity = "per-channel",
    activations: Activations = "uint8",
    method: str = "minmax",
    nodes_to_exclude: Sequence[str] = (),
    reduce_range: bool = False,
    card: ModelCard | None = None,
    engine: Literal["onnxruntime", "openvino"] = "onnxruntime",
    calibration_cache: str | Path | None = None,
    preprocess: bool = True,
    fast_path: FastPathFacts | None = None,
) -> Path:
    """Quantize a float ONNX model to static int8 and write it to ``out``; return ``out``.

    Args:
        model_path: float ONNX model (exported by atrous, so its card gives preprocessing).
        calib: dataset samples, RGB images or preprocessed batches used for calibration.
        num: number of calibration images.
        granularity: weight scales per output channel or one per tensor.
        activations: uint8 (fast on AVX2 without VNNI) or int8 activations.
        method: calibration method: minmax, entropy or percentile.
        nodes_to_exclude: node names kept in float (mixed precision).
        reduce_range: 7-bit weights (avoids u8s8 saturation on some AVX2 kernels).
        card: preprocessing contract when the file carries none.
        engine: 'onnxruntime' writes a QDQ .onnx; 'openvino' writes NNCF-quantized IR (.xml).
        calibration_cache: JSON file of activation ranges; written on first use, reused after
            (sensitivity sweeps calibrate once).
        preprocess: run ORT's optimisation/shape-inference pre-pass (skip if already done).
        fast_path: the written card's fast-path section (a quantized fast graph's).
    """
    model_path, out = Path(model_path), Path(out)
    if not model_path.is_file():
        raise InputError(f"{model_path}: file not found")
    check_settings(granularity, activations, method, engine)
    batches = calibration_batches(calib, card, num, card_source=model_path)
    settings = {
        "granularity": granularity,
        "activations": activations,
        "calibration": method,
        "calibration_images": len(batches),
        "float_nodes": list(nodes_to_exclude),
    }
    if engine == "openvino":
        return quantize_openvino(model_path, batches, out, granularity, nodes_to_exclude)
    with scratch_directory("ptq") as tmp, atomic_path(out) as target:
        prepared = model_path
        if preprocess:
            prepared = preprocess_for_quantization(model_path, Path(tmp) / "prepared.onnx")
        _quantize_static(
            prepared,
            target,
            batches,
            granularity,
            activations,
            method,
            reduce_range,
            nodes_to_exclude,
            calibration_cache,
        )
        copy_metadata(
            model_path,
            target,
            {"quantization": {"engine": "onnxruntime", **settings}},
            fast_path,
        )
    return out
