"""Static int8 post-training quantization of an ONNX model (ONNX Runtime QDQ, or OpenVINO NNCF).

Calibration images go through the model card's own preprocessing (the Segmenter's), so the
ranges seen at calibration are those seen at inference (pitfall 2). Defaults follow what is fast
on an AVX2 CPU without VNNI: uint8 activations with per-channel int8 weights.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np
import onnx
from onnxruntime.quantization import CalibrationDataReader

from atrous._atomic import atomic_path
from atrous.card import ModelCard
from atrous.errors import InputError, ModelError

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


def image_of(item: Any) -> np.ndarray:
    """An RGB uint8 image from a dataset sample, a (image, mask) pair or a bare array."""
    image = getattr(item, "image", None)
    if image is None:
        image = item[0] if isinstance(item, tuple | list) else item
    if not isinstance(image, np.ndarray) or image.ndim != 3:
        raise InputError(f"calibration item is not an H x W x 3 image ({type(item).__name__})")
    return image


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
    segmenter = None
    for item in items:
        if len(batches) >= num:
            break
        if isinstance(item, np.ndarray) and item.ndim == 4:
            # preprocessed: float batches, or uint8 pixel batches for graphs that take pixels
            batches.append(item if item.dtype == np.uint8 else item.astype(np.float32, copy=False))
            continue
        if segmenter is None:
            if card is None and card_source is not None:
                from atrous.export.onnx import read_onnx_card

                card = read_onnx_card(card_source)
            if card is None:
                raise ModelError(
                    f"{card_source or 'model'}: no model card (preprocessing) to calibrate from "
                    "images; is it an atrous segmentation model?"
                )
            from atrous.segmenter import Segmenter

            segmenter = Segmenter(cast(Any, None), card)  # preprocessing only, no engine needed
        batches.append(segmenter.preprocess([image_of(item)])[0])
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


def copy_metadata(source: str | Path, target: str | Path, notes: dict[str, Any]) -> None:
    """Copy ``source``'s metadata (the model card) into ``target``, adding provenance notes."""
    from atrous.card import card_from_json
    from atrous.runtimes import CARD_KEY

    src = onnx.load(str(source), load_external_data=False)
    dst = onnx.load(str(target))
    props = {p.key: p.value for p in src.metadata_props}
    if CARD_KEY in props:
        card = card_from_json(props[CARD_KEY], str(source))
        card.provenance.notes = {**card.provenance.notes, **notes}
        props[CARD_KEY] = card.to_json()
    del dst.metadata_props[:]
    for key, value in props.items():
        dst.metadata_props.add(key=key, value=value)
    onnx.save(dst, str(target))


def preprocess_for_quantization(source: Path, target: Path) -> Path:
    """ORT's recommended pre-pass: graph optimisation (folds BN) and shape inference."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

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
    notes: dict[str, Any] | None = None,
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
        notes: extra provenance notes for the written model card (merged over the source's).
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
        from atrous.quantize.nncf_ptq import quantize_openvino

        return quantize_openvino(model_path, batches, out, granularity, nodes_to_exclude)
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    methods = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }
    with tempfile.TemporaryDirectory(prefix="atrous-ptq-") as tmp, atomic_path(out) as target:
        prepared = model_path
        if preprocess:
            prepared = preprocess_for_quantization(model_path, Path(tmp) / "prepared.onnx")
        quantize_static(
            str(prepared),
            str(target),
            BatchReader(_input_name(prepared), batches),
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QUInt8 if activations == "uint8" else QuantType.QInt8,
            weight_type=QuantType.QInt8,
            per_channel=granularity == "per-channel",
            reduce_range=reduce_range,
            calibrate_method=methods[method],
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
        copy_metadata(
            model_path,
            target,
            {"quantization": {"engine": "onnxruntime", **settings}, **(notes or {})},
        )
    return out
