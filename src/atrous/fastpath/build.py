"""``export_fast``: a checkpoint or zoo model -> its fast graph (fp32 or int8), checked against
the float PyTorch path on held-out images."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from atrous.card import ModelCard
from atrous.errors import ModelError
from atrous.export.parity import held_out_agreement, synthetic_image
from atrous.fastpath.graph import export_fast_onnx
from atrous.fastpath.int8 import export_fast_int8, fast_engine
from atrous.fastpath.modules import DEFAULT_LABEL_STRIDE
from atrous.preprocess import Pipeline, image_of
from atrous.runtimes import TorchEngine
from atrous.sources import load_engine, load_source

__all__ = ["FastExport", "export_fast"]


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
    check_label_stride: int | None = None,
) -> FastExport:
    """Export the fast graph of a checkpoint or zoo model (fp32, or int8 calibrated on
    ``calibration``) and measure its pixel agreement with the float PyTorch path on ``check``
    held-out images (the calibration items after the first ``num``, else synthetic images).

    ``check_label_stride``: the label stride the agreement is measured at (default the graph's;
    1 measures what the graph itself changes, without the host's coarser labels).

    ``out`` names the engine: .xml is an int8 OpenVINO IR (the faster build on the Intel CPUs
    measured, see benchmarks/results/fast_path.md), .onnx an fp32 or int8 ONNX Runtime graph.
    """
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
    runner, written = load_engine(out, engine, threads)
    checked = written
    if check_label_stride is not None and written.fast_path is not None:
        facts = written.fast_path.model_copy(update={"label_stride": check_label_stride})
        checked = written.model_copy(update={"fast_path": facts})
    fast = Pipeline(runner, checked)
    ref = Pipeline(TorchEngine(net, threads), card)
    rows = held_out_agreement(ref, fast, held).rows
    agreement = float(np.mean([r.agreement for r in rows]))
    return FastExport(out, written, precision, label_stride, engine, agreement, len(held))
