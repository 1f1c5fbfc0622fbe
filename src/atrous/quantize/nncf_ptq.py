"""Static int8 for OpenVINO with NNCF (optional: ``pip install atrous[openvino]``).

The float ONNX model is converted to OpenVINO, quantized by NNCF on the same calibration batches
as the ONNX Runtime path, and saved as IR (.xml + .bin) with the model card in its rt_info.
"""

from __future__ import annotations

import contextlib
import io
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from atrous.card import FastPathFacts, read_onnx_card, write_openvino_card
from atrous.errors import InputError, ModelError
from atrous.export._staging import publish, staged_path
from atrous.quantize.openvino_graph import (
    activation_maxima,
    concat_feeders,
    float_channel_gates,
    quantize_concat_inputs,
    shuffles_to_selections,
)

__all__ = ["nncf_available", "quantize_openvino"]


def nncf_available() -> bool:
    """True when NNCF and OpenVINO import."""
    try:
        import nncf  # noqa: F401
        import openvino  # noqa: F401
    except ImportError:
        return False
    return True


def _nncf_log_to_stderr() -> None:
    """Point NNCF's log handlers that write to stdout at stderr instead."""
    from nncf.common.logging import nncf_logger

    for handler in nncf_logger.handlers:
        if isinstance(handler, logging.StreamHandler) and handler.stream in (
            sys.stdout,
            sys.__stdout__,
        ):
            handler.setStream(sys.stderr)


def quantize_openvino(
    model_path: Path,
    batches: Sequence[np.ndarray],
    out: Path,
    granularity: str = "per-channel",
    float_nodes: Sequence[str] = (),
    preset: str = "mixed",
    fast_path: FastPathFacts | None = None,
    input_layout: str = "NCHW",
) -> Path:
    """Quantize ``model_path`` (ONNX) with NNCF and save OpenVINO IR at ``out`` (.xml).

    ``preset``: 'mixed' (asymmetric activations: safe for inputs that are not ReLU outputs) or
    'performance' (symmetric: the CPU plugin's fastest int8 kernels). ``fast_path``
    replaces the card's fast-path section (a quantized fast graph's). ``input_layout='NHWC'``
    makes the IR take channels-last input and 4-D output (the transposes merge into the CPU
    plugin's own reorders; the card says so).
    """
    if out.suffix != ".xml":
        raise InputError(f"{out}: OpenVINO output must be an .xml file")
    if not nncf_available():
        raise ModelError("engine 'openvino' needs NNCF: pip install 'atrous[openvino]'")
    import nncf
    import openvino as ov

    if granularity != "per-channel":
        # NNCF's CPU target always uses per-channel weight scales for convolutions
        raise InputError("engine 'openvino' quantizes weights per channel only")
    presets = {
        "mixed": nncf.QuantizationPreset.MIXED,
        "performance": nncf.QuantizationPreset.PERFORMANCE,
    }
    if preset not in presets:
        raise InputError(f"NNCF preset must be one of {sorted(presets)}, got '{preset}'")
    if input_layout not in ("NCHW", "NHWC"):
        raise InputError(f"input layout must be NCHW or NHWC, got '{input_layout}'")
    # convert_model folds constant subgraphs (the Reshape of depthwise weights), which NNCF
    # needs to quantize them per output channel and the CPU plugin to run them in int8
    model = ov.convert_model(str(model_path))
    shuffles_to_selections(model)
    feeders = concat_feeders(model)
    maxima = activation_maxima(model, feeders, batches) if feeders else {}
    ignored = nncf.IgnoredScope(names=list(float_nodes), validate=False) if float_nodes else None
    # NNCF draws its progress bars and logs on stdout, which would corrupt a CLI's --json
    # output: the bars are dropped, the log goes to stderr
    _nncf_log_to_stderr()
    with contextlib.redirect_stdout(io.StringIO()):
        quantized = nncf.quantize(
            model,
            nncf.Dataset(list(batches)),
            preset=presets[preset],
            subset_size=len(batches),
            ignored_scope=ignored,
        )
    quantize_concat_inputs(quantized, maxima)  # NNCF leaves ShuffleNet's concats float
    float_channel_gates(quantized)  # C gate values: float costs nothing, runs faster
    if input_layout == "NHWC":
        from openvino.preprocess import PrePostProcessor

        steps = PrePostProcessor(quantized)
        steps.input().tensor().set_layout(ov.Layout("NHWC"))
        steps.input().model().set_layout(ov.Layout("NCHW"))
        if quantized.outputs[0].get_partial_shape().rank.get_length() == 4:
            # a card's layout covers the logits too
            steps.output().tensor().set_layout(ov.Layout("NHWC"))
            steps.output().model().set_layout(ov.Layout("NCHW"))
        quantized = steps.build()
    card = read_onnx_card(model_path)
    if card is not None:
        card.preprocessing = card.preprocessing.model_copy(update={"layout": input_layout})
        card.provenance.notes = {
            **card.provenance.notes,
            "quantization": {"engine": "openvino-nncf", "calibration_images": len(batches)},
        }
        card.fast_path = fast_path or card.fast_path
        write_openvino_card(quantized, card)
    with staged_path(out) as staged:  # .bin before .xml: an .xml never lacks its weights
        ov.save_model(quantized, str(staged), compress_to_fp16=False)
        publish(staged, out)
    return out
