"""``export_model``: checkpoint or zoo name -> exported file, always checked against PyTorch."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from atrous.card import ModelCard
from atrous.errors import ConfigError
from atrous.export._staging import publish, staged_path
from atrous.export.lint import LintWarning, lint_model
from atrous.export.ncnn import INT8_UNAVAILABLE, export_ncnn
from atrous.export.onnx import export_onnx
from atrous.export.openvino import export_openvino
from atrous.export.parity import (
    INT8_AGREEMENT_THRESHOLD,
    ParityReport,
    check_parity,
    held_out_agreement,
    synthetic_image,
)
from atrous.export.tflite import export_tflite
from atrous.preprocess import Pipeline, image_of
from atrous.runtimes import Engine, TorchEngine
from atrous.runtimes.contract import override_card
from atrous.sources import load_engine, load_source

__all__ = [
    "FORMATS",
    "ExportResult",
    "export_model",
    "load_source",
    "parity_sizes",
    "WITH_ARGMAX_DEFAULT",
]

FORMATS = {"onnx": ".onnx", "openvino": ".xml", "tflite": ".tflite", "ncnn": ".param"}
ENGINE_OF_FORMAT = {
    "onnx": "onnxruntime",
    "openvino": "openvino",
    "tflite": "litert",
    "ncnn": "ncnn",
}

# Logits out by default: the Segmenter resizes them bilinearly to the image's own size and
# takes the argmax there, as it does with PyTorch, so masks agree end to end (the parity rows at
# "original" scope). An argmax inside the graph (--with-argmax) is faster end to end (a 500x375
# image, dm0.5 at 513, 2 threads: 130 against 253 ms on ORT, benchmarks/results/engines.md) but
# takes the argmax at network size and resizes labels nearest: 93-97% of pixels agree with
# PyTorch's at the original size; it also gives no probabilities (flip, refine).
WITH_ARGMAX_DEFAULT = False
# end-to-end mask agreement at the images' original sizes that an export must reach; an argmax
# in the graph only has to stay near its known nearest-resize loss
ORIGINAL_SIZE_THRESHOLD = 0.995
ORIGINAL_SIZE_THRESHOLD_LABELS = 0.8
# photo-shaped images (H, W) checked end to end; neither is the network's size
ORIGINAL_SIZES = [(375, 500), (480, 360)]


@dataclass
class ExportResult:
    """The written file, the card it carries and the parity check it passed."""

    path: Path
    card: ModelCard
    parity: ParityReport
    lints: list[LintWarning] = field(default_factory=list)


def _int8_agreement(
    reference: Engine, candidate: Engine, card: ModelCard, out_card: ModelCard, held: Sequence[Any]
) -> ParityReport:
    """Masks of the quantized file against float PyTorch's on held-out calibration images (or
    synthetic photos when none are left over), both resizing images to the file's size, so
    the check measures quantization and nothing else."""
    side = out_card.preprocessing.size or 513
    images = [image_of(item) for item in held] or [
        synthetic_image(side, side, seed=i) for i in range(4)
    ]
    return _pipeline_agreement(reference, candidate, card, out_card, images)


def _pipeline_agreement(
    reference: Engine,
    candidate: Engine,
    card: ModelCard,
    out_card: ModelCard,
    images: list,
    threshold: float = INT8_AGREEMENT_THRESHOLD,
) -> ParityReport:
    """Masks at the images' own sizes, PyTorch's against the file's, both preprocessed as the
    file's card says (its size, in the reference's layout)."""
    same_size = card.model_copy(deep=True)
    same_size.preprocessing = out_card.preprocessing.model_copy(
        update={"layout": card.preprocessing.layout}
    )
    pipelines = Pipeline(reference, same_size), Pipeline(candidate, out_card)
    return held_out_agreement(*pipelines, images, threshold)


def _original_size_rows(
    reference: Engine, candidate: Engine, card: ModelCard, out_card: ModelCard
) -> list:
    """End-to-end parity: PyTorch's masks against the file's on photo-shaped images at their
    original sizes (preprocess, network, resize back, argmax; what users get)."""
    labels = out_card.output == "labels" and card.output != "labels"
    threshold = ORIGINAL_SIZE_THRESHOLD_LABELS if labels else ORIGINAL_SIZE_THRESHOLD
    images = [synthetic_image(h, w, seed=7 + i) for i, (h, w) in enumerate(ORIGINAL_SIZES)]
    return _pipeline_agreement(reference, candidate, card, out_card, images, threshold).rows


def parity_sizes(card: ModelCard, size: tuple[int, int] | None = None) -> list[tuple[int, int]]:
    """Two real-shaped input sizes: the export size (or the card's) and a 3:4 landscape one.

    The second mimics a photo resized by the card's 'longest' policy and padded to its multiple.
    """
    if size is not None:
        h, w = size
    else:
        side = card.preprocessing.size or 513
        h = w = side
    multiple = max(1, card.preprocessing.pad_multiple)
    short = -(-(h * 3 // 4) // multiple) * multiple
    return [(h, w), (max(multiple, short), w)]


def export_model(
    checkpoint_or_name: str | Path,
    format: str = "onnx",
    out: str | Path | None = None,
    size: tuple[int, int] | None = None,
    opset: int | None = None,
    with_argmax: bool | None = None,
    *,
    threads: int | None = None,
    check_sizes: list[tuple[int, int]] | None = None,
    precision: str = "fp32",
    calibration: Sequence[Any] = (),
    num: int = 32,
    contract: Sequence[str] = (),
    progress: Callable[[str], None] | None = None,
) -> ExportResult:
    """Export a checkpoint or zoo model to ``format``, then check parity against PyTorch.

    The file is written and checked beside ``out`` and replaces it only once verified: a
    failed check or an interruption leaves an existing file as it was.

    Lints for the format (dilated convolutions in TFLite, resize conventions) come back in
    ``ExportResult.lints``; they warn, they do not stop the export.

    Args:
        checkpoint_or_name: a .pt checkpoint or a zoo name.
        format: 'onnx', 'openvino', 'tflite' or 'ncnn' (fp32 .param + .bin, the card beside).
        out: output file; defaults to the source's stem with the format's suffix. For ncnn it
            may name a folder (an existing one, or a path without a suffix).
        size: (H, W) to trace at (fixed-size formats run only at this size).
        opset: ONNX opset (default 17).
        with_argmax: argmax inside the graph (uint8 labels out); None takes the measured default.
        threads: threads for the parity check's engines.
        check_sizes: sizes for the parity check; default two real-shaped ones (``parity_sizes``).
        precision: 'int8' for a full-integer .tflite (other formats: ``atrous.quantize``).
        calibration: int8: dataset samples or RGB images; the first ``num`` calibrate, the
            next 8 are held out for the check (masks against PyTorch's, >= 95% agreement).
        contract: ``key=value`` overrides of the card the exported file carries.
        progress: called with the name of each step as it starts (the CLI prints them).

    Raises:
        ModelError: the export failed or disagrees with PyTorch (under 99.9% argmax agreement).
    """
    argmax = WITH_ARGMAX_DEFAULT if with_argmax is None else with_argmax
    path = _output_path(checkpoint_or_name, format, out, precision, argmax)
    model, card = load_source(checkpoint_or_name)
    card = override_card(card, list(contract), str(checkpoint_or_name))
    lints = lint_model(model, format)
    _check_target(path, format, precision)
    step = progress or (lambda _: None)
    with staged_path(path) as staged:
        step(f"writing the {format} file")
        report, out_card = _export_and_check(
            model,
            card,
            format,
            staged,
            size,
            opset,
            argmax,
            threads,
            check_sizes,
            precision,
            calibration,
            num,
            step,
        )
        report.raise_if_failed(str(path))
        publish(staged, path)
    return ExportResult(path, out_card, report, lints)


def _output_path(
    checkpoint_or_name: str | Path,
    format: str,
    out: str | Path | None,
    precision: str,
    argmax: bool,
) -> Path:
    """The file to write (``out``, else the source's stem with the format's suffix); ConfigError
    for an unknown format or what ncnn cannot write (int8, an argmax in the graph)."""
    if format not in FORMATS:
        raise ConfigError(f"unknown export format '{format}'; choose one of {', '.join(FORMATS)}")
    stem = Path(str(checkpoint_or_name)).stem
    path = Path(out) if out is not None else Path(stem + FORMATS[format])
    if format == "ncnn":
        path = _ncnn_path(path, stem)
        if precision != "fp32":
            raise ConfigError(f"{path}: {INT8_UNAVAILABLE}")
        if argmax:
            raise ConfigError(f"{path}: an ncnn export returns logits (no --with-argmax)")
    return path


def _check_target(path: Path, format: str, precision: str) -> None:
    """ConfigError when ``precision`` does not apply to ``format`` or ``path`` has the wrong
    suffix for it."""
    if precision != "fp32" and format != "tflite":
        raise ConfigError(
            f"precision {precision} applies to --format tflite; for int8 ONNX use 'atrous quantize'"
        )
    if path.suffix != FORMATS[format]:
        raise ConfigError(f"{path}: a {format} export is written to a '{FORMATS[format]}' file")


def _ncnn_path(path: Path, stem: str) -> Path:
    """``-o`` for ncnn: a folder (existing, or a name without a suffix) gets STEM.param."""
    return path / f"{stem}.param" if path.is_dir() or not path.suffix else path


def _export_and_check(
    model: nn.Module,
    card: ModelCard,
    format: str,
    path: Path,
    size: tuple[int, int] | None,
    opset: int | None,
    argmax: bool,
    threads: int | None,
    check_sizes: list[tuple[int, int]] | None,
    precision: str,
    calibration: Sequence[Any],
    num: int,
    step: Callable[[str], None] = lambda _: None,
) -> tuple[ParityReport, ModelCard]:
    """Write the file, reopen it on its engine and compare it with PyTorch."""
    layout = "NCHW"
    if format == "onnx":
        export_onnx(model, card, path, opset=opset or 17, with_argmax=argmax, sample_size=size)
    elif format == "openvino":
        export_openvino(model, card, path, opset=opset or 17, with_argmax=argmax, sample_size=size)
    elif format == "ncnn":
        export_ncnn(model, card, path, sample_size=size)
    else:
        fixed = size or (card.preprocessing.size or 513,) * 2
        if check_sizes and any(tuple(s) != tuple(fixed) for s in check_sizes):
            raise ConfigError(f"{path}: a .tflite runs only at {fixed[0]}x{fixed[1]}")
        check_sizes = check_sizes or [fixed, fixed]  # fixed size: two different images
        export_tflite(
            model,
            card,
            path,
            with_argmax=argmax,
            size=fixed,
            precision=precision,
            calibration=calibration[:num],
        )
        layout = "NHWC"
    step("checking parity against PyTorch")
    candidate, out_card = load_engine(path, ENGINE_OF_FORMAT[format], threads)
    reference: Engine = TorchEngine(model, threads)
    if precision == "int8":
        report = _int8_agreement(reference, candidate, card, out_card, calibration[num : num + 8])
    else:
        report = check_parity(
            reference,
            candidate,
            card,
            check_sizes or parity_sizes(card, size),
            candidate_output=out_card.output,
            candidate_layout=layout,
        )
        report.rows += _original_size_rows(reference, candidate, card, out_card)
    return report, out_card
