"""``atrous train``, ``atrous evaluate`` and ``atrous demo``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from atrous._atomic import atomic_write_text
from atrous.cli._app import app, check_threads, console, print_json, print_table
from atrous.data import SegmentationDataset, open_dataset
from atrous.errors import InputError
from atrous.models.zoo import resolve_experiment

SYNTHETIC_SPLITS = ("train", "val", "test")

if TYPE_CHECKING:
    from atrous.card import ModelCard


def _config_path(config: str) -> Path:
    """A YAML file, or the name of a shipped recipe ('demo', 'voc', 'cityscapes')."""
    from atrous.demo import packaged_config

    path = Path(config)
    if path.is_file() or path.suffix in (".yaml", ".yml"):  # not the demo/ output folder
        return path
    shipped = packaged_config(config)
    return shipped if shipped.is_file() else path


def _check_evaluate_options(kind: str | None, limit: int | None, plot: Path | None) -> None:
    """Refuse a bad --kind, --limit or --plot suffix before the model is loaded and run."""
    from atrous.data.check import check_kind

    check_kind(kind)
    if limit is not None and limit < 1:
        raise InputError(f"--limit: expected a positive number of images, got {limit}")
    if plot is not None:
        from atrous.evaluate import plot_formats

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


@app.command("train")
def train_command(
    config: str = typer.Argument(
        ..., help="experiment YAML (or a shipped recipe: demo, voc, cityscapes)"
    ),
    overrides: list[str] = typer.Argument(None, help="key=value overrides, e.g. train.lr=0.01"),
    out: Path = typer.Option(None, "--out", "-o", help="output folder (default: out_dir)"),
    resume: bool = typer.Option(False, "--resume", help="continue from OUT/last.pt"),
    qat: bool = typer.Option(False, "--qat", help="quantization-aware fine-tuning (with --from)"),
    from_: Path = typer.Option(None, "--from", help="checkpoint to fine-tune with --qat"),
    steps: int = typer.Option(None, help="--qat steps (default: one epoch)"),
) -> None:
    """Train a model from an experiment YAML; checkpoints, metrics and TensorBoard go to OUT."""
    from atrous.train import train

    experiment = resolve_experiment(_config_path(config), overrides or [])
    if qat or from_ is not None:
        from atrous.cli.quantize import qat_command

        qat_command(experiment, from_, out or Path(experiment.out_dir), steps)
        return
    result = train(experiment, out, resume=resume, console=console)
    if result.interrupted:
        raise typer.Exit(130)
    if result.best_checkpoint is not None:
        console.print(
            f"best val mIoU {result.best_miou:.4f} (epoch {result.best_epoch}): "
            f"{result.best_checkpoint}"
        )


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
    engine: str = typer.Option("auto", help="auto, torch, onnxruntime, openvino or litert"),
    threads: int = typer.Option(None, help="inference threads (default: all cores)"),
    plot: Path = typer.Option(None, help="save the confusion matrix plot here (.png/.svg/.pdf)"),
    out: Path = typer.Option(None, "--out", "-o", help="write the result JSON here"),
    as_json: bool = typer.Option(False, "--json", help="print JSON instead of tables"),
) -> None:
    """Score a model on a dataset: mIoU, per-class IoU, accuracies, under a named protocol."""
    from atrous.evaluate import evaluate, parse_scales, plot_confusion
    from atrous.segmenter import Segmenter

    _check_evaluate_options(kind, limit, plot)
    segmenter = Segmenter.from_file(model, engine=engine, threads=check_threads(threads))
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
    if out is not None:
        import json

        atomic_write_text(out, json.dumps(result.to_dict(), indent=2))
    if plot is not None:
        plot_confusion(result, plot)
    if as_json:
        print_json(result.to_dict())
        return
    print_table(
        f"{model} on {dataset.name} ({result.images} images)",
        ["class", "IoU", "accuracy"],
        result.class_table(),
    )
    console.print(
        f"mIoU {result.miou:.4f}  pixel acc {result.pixel_accuracy:.4f}  "
        f"mean acc {result.mean_accuracy:.4f}  fwIoU {result.fw_iou:.4f}  "
        f"scales {','.join(str(s) for s in result.scales)}{' +flip' if flip else ''}"
        f"{' +refine' if refine else ''}",
        highlight=False,
    )
    console.print(f"protocol: {result.protocol} ({result.protocol_description})", highlight=False)


@app.command("demo")
def demo_command(
    out: Path = typer.Option(Path("demo"), "--out", "-o", help="output folder"),
    overrides: list[str] = typer.Argument(None, help="key=value overrides of configs/demo.yaml"),
) -> None:
    """Train and evaluate on the synthetic set in a few minutes; write overlays and a summary."""
    from atrous.demo import run_demo

    run_demo(out, overrides=overrides or [], console=console)
