"""``atrous evaluate``: score a model on a dataset under a named protocol."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.markup import escape

from atrous.cli._app import app
from atrous.cli._model import open_segmenter, path_line
from atrous.cli._options import (
    ContractOpt,
    EngineOpt,
    JsonFlag,
    JsonOut,
    OutputTensorOpt,
    ThreadsOpt,
    WeightsOpt,
    with_output_tensor,
)
from atrous.cli._output import Output
from atrous.data import SegmentationDataset, open_dataset
from atrous.data.check import check_kind
from atrous.errors import InputError
from atrous.evaluate import evaluate, parse_scales, plot_confusion, plot_formats

if TYPE_CHECKING:
    from atrous.card import ModelCard

SYNTHETIC_SPLITS = ("train", "val", "test")


def _check_evaluate_options(kind: str | None, limit: int | None, plot: Path | None) -> None:
    """Refuse a bad --kind, --limit or --plot suffix before the model is loaded and run."""
    check_kind(kind)
    if limit is not None and limit < 1:
        raise InputError(f"--limit: expected a positive number of images, got {limit}")
    if plot is not None:
        suffix, formats = plot.suffix.lower().lstrip("."), plot_formats()
        if suffix and suffix not in formats:
            raise InputError(
                f"--plot {plot}: matplotlib cannot write .{suffix} files; "
                f"use one of {', '.join('.' + f for f in formats)}"
            )


def _open_split(
    data: str, split: str, kind: str | None, card: ModelCard | None
) -> SegmentationDataset:
    """open_dataset, with the synthetic set's refusal of an unknown split as a one-line error."""
    try:
        return open_dataset(data, split, kind, card=card)
    except ValueError as exc:  # SyntheticShapes has a seed for train, val and test only
        where = f"--split '{split}'" if split not in SYNTHETIC_SPLITS else data
        raise InputError(f"{where}: {exc}") from None


@app.command("evaluate")
def evaluate_command(
    model: str = typer.Argument(..., help="checkpoint, exported model or zoo name"),
    data: str = typer.Argument(..., help="dataset folder, experiment YAML, or 'synthetic'"),
    split: str = typer.Option("val", help="dataset split"),
    kind: str = typer.Option(None, help="voc, cityscapes or folder (default: detected)"),
    protocol: str = typer.Option("dataset", help="dataset, tf-pad513, torchvision-520, per-image"),
    flip: bool = typer.Option(False, "--flip", help="also average the mirrored prediction"),
    scales: str = typer.Option("1.0", help="input scales, e.g. 0.5:0.25:1.75 or 0.75,1,1.25"),
    refine: bool = typer.Option(
        False, "--refine", help="snap the probabilities to image edges (guided filter)"
    ),
    limit: int = typer.Option(None, help="only the first N images"),
    engine: EngineOpt = "auto",
    threads: ThreadsOpt = None,
    plot: Path = typer.Option(None, help="save the confusion matrix plot here (.png/.svg/.pdf)"),
    contract: ContractOpt = None,
    output_tensor: OutputTensorOpt = None,
    weights: WeightsOpt = None,
    as_json: JsonFlag = False,
    json_out: JsonOut = None,
) -> None:
    """Score a model on a dataset: mIoU, per-class IoU, accuracies, under a named protocol."""
    contract = with_output_tensor(contract, output_tensor)
    out = Output(as_json, json_out)
    _check_evaluate_options(kind, limit, plot)
    # a fast graph computes labels at 1/2 by default: scores are taken on full-resolution labels
    segmenter = open_segmenter(model, engine, threads, contract, weights).at_full_resolution()
    dataset = _open_split(data, split, kind, segmenter.card)
    result = evaluate(
        segmenter,
        dataset,
        protocol=protocol,
        flip=flip,
        scales=parse_scales(scales),
        refine=refine,
        limit=limit,
        progress=not as_json and sys.stderr.isatty(),
    )
    if plot is not None:
        plot_confusion(result, plot)
    out.json({**result.to_dict(), "path": segmenter.path_used})
    out.table(
        f"{model} on {dataset.name} ({result.images} images)",
        ["class", "IoU", "accuracy"],
        result.class_table(),
    )
    out.print(
        f"mIoU {result.miou:.4f}  pixel acc {result.pixel_accuracy:.4f}  "
        f"mean acc {result.mean_accuracy:.4f}  fwIoU {result.fw_iou:.4f}  "
        f"scales {','.join(str(s) for s in result.scales)}{' +flip' if flip else ''}"
        f"{' +refine' if refine else ''}"
    )
    out.print(f"protocol: {result.protocol} ({result.protocol_description})")
    out.note(escape(path_line(segmenter)))
