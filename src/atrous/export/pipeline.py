"""``export_model``: checkpoint or zoo name -> exported file, always checked against PyTorch."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from atrous.card import ModelCard
from atrous.errors import ConfigError, ModelError
from atrous.export.parity import ParityReport, check_parity
from atrous.runtimes import Engine, TorchEngine, load_engine

__all__ = ["FORMATS", "ExportResult", "export_model", "parity_sizes", "WITH_ARGMAX_DEFAULT"]

FORMATS = {"onnx": ".onnx"}
ENGINE_OF_FORMAT = {"onnx": "onnxruntime"}

# Measured by benchmarks/engines.py (see benchmarks/results/engines.md): end to end, logits out of
# the graph + argmax in NumPy/torch vs uint8 labels from the graph.
WITH_ARGMAX_DEFAULT = False


@dataclass
class ExportResult:
    """The written file, the card it carries and the parity check it passed."""

    path: Path
    card: ModelCard
    parity: ParityReport


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


def load_source(source: str | Path) -> tuple[object, ModelCard]:
    """A PyTorch model and its card from a checkpoint or a zoo name (random weights)."""
    from atrous.checkpoint import load_checkpoint
    from atrous.models.zoo import default_card, get_model, list_models

    text = str(source)
    if Path(text).suffix in (".pt", ".pth", ".ckpt"):
        return load_checkpoint(text)
    if not Path(text).exists() and text in list_models():
        return get_model(text).eval(), default_card(text)
    raise ModelError(f"{text}: expected a checkpoint (.pt) or a zoo name to export")


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
) -> ExportResult:
    """Export a checkpoint or zoo model to ``format``, then check parity against PyTorch.

    Args:
        checkpoint_or_name: a .pt checkpoint or a zoo name.
        format: 'onnx', 'openvino' or 'tflite'.
        out: output file; defaults to the source's stem with the format's suffix.
        size: (H, W) to trace at (fixed-size formats run only at this size).
        opset: ONNX opset (default 17).
        with_argmax: argmax inside the graph (uint8 labels out); None takes the measured default.
        threads: threads for the parity check's engines.
        check_sizes: sizes for the parity check; default two real-shaped ones (``parity_sizes``).

    Raises:
        ModelError: the export failed or disagrees with PyTorch (under 99.9% argmax agreement).
    """
    from atrous.export.onnx import export_onnx

    if format not in FORMATS:
        raise ConfigError(f"unknown export format '{format}'; choose one of {', '.join(FORMATS)}")
    model, card = load_source(checkpoint_or_name)
    argmax = WITH_ARGMAX_DEFAULT if with_argmax is None else with_argmax
    path = (
        Path(out) if out is not None else Path(Path(str(checkpoint_or_name)).stem + FORMATS[format])
    )
    if format == "onnx":
        export_onnx(model, card, path, opset=opset or 17, with_argmax=argmax, sample_size=size)
    candidate, out_card = load_engine(path, ENGINE_OF_FORMAT[format], threads)
    reference: Engine = TorchEngine(model, threads)
    report = check_parity(
        reference,
        candidate,
        card,
        check_sizes or parity_sizes(card, size),
        candidate_output=out_card.output,
    )
    try:
        report.raise_if_failed(str(path))
    except ModelError:
        path.unlink(missing_ok=True)
        raise
    return ExportResult(path, out_card, report)
