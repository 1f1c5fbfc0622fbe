"""``atrous demo``: the whole pipeline in a few minutes on a laptop CPU.

Builds the synthetic dataset, trains DeepLabV3 MobileNetV2 dm0.5 OS16 from scratch at 192x192,
evaluates the best checkpoint with the one evaluator twice (the network alone, and with its
probabilities refined to the image's edges, :mod:`atrous.refine`), writes overlays of validation
images, a confusion-matrix plot, the mIoU-vs-minutes curve and a summary table (Markdown + JSON).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image
from rich.console import Console
from rich.table import Table

from atrous._atomic import atomic_path, atomic_write_text
from atrous.config import ExperimentConfig, load_experiment
from atrous.data import build_dataset
from atrous.evaluate import EvalResult, evaluate, plot_confusion
from atrous.segmenter import Segmenter
from atrous.train import TrainResult, train
from atrous.visualize import colorize, overlay

__all__ = ["DemoResult", "run_demo", "demo_config", "packaged_config"]


@dataclass
class DemoResult:
    """Where the demo wrote its outputs and what it measured."""

    out_dir: Path
    train: TrainResult
    evaluation: EvalResult
    refined: EvalResult
    minutes: float
    summary: dict[str, Any]


def packaged_config(name: str) -> Path:
    """Path of a YAML recipe shipped in ``atrous/configs`` (e.g. 'demo', 'voc')."""
    return Path(str(resources.files("atrous") / "configs" / f"{name}.yaml"))


def demo_config(out_dir: str | Path, overrides: list[str] | None = None) -> ExperimentConfig:
    """The demo's experiment (configs/demo.yaml) writing to ``out_dir``, with overrides."""
    return load_experiment(packaged_config("demo"), [f"out_dir={out_dir}", *(overrides or [])])


def _save_panel(
    path: Path, image: np.ndarray, label: np.ndarray, preds: list[np.ndarray], palette
) -> None:
    """image | ground truth | one overlay per prediction, side by side, 2x nearest upscaled,
    each under a caption naming it."""
    overlays = [overlay(image, pred, palette, alpha=0.6) for pred in preds]
    tiles = [image, colorize(label, palette), *overlays]
    names = PANEL_NAMES[: len(tiles)]
    panel = np.concatenate(
        [_captioned(t.repeat(2, 0).repeat(2, 1), n) for t, n in zip(tiles, names, strict=True)],
        axis=1,
    )
    with atomic_path(path) as tmp:
        Image.fromarray(panel).save(tmp, format="PNG")


PANEL_NAMES = ("image", "ground truth", "network", "refined (guided filter)")


def _captioned(tile: np.ndarray, caption: str) -> np.ndarray:
    """``tile`` under a white strip with ``caption`` written in black."""
    strip = np.full((22, tile.shape[1], 3), 255, np.uint8)
    cv2.putText(strip, caption, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([strip, tile], axis=0)


def _plot_curve(history: list[dict[str, Any]], path: Path) -> None:
    """Val mIoU against wall-clock minutes of training."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = [(h["elapsed_seconds"] / 60, h["val_miou"]) for h in history if "val_miou" in h]
    if not points:
        return
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot(*zip(*points, strict=True), marker="o", label="val mIoU after each epoch (network)")
    ax.axhline(0.9, color="grey", linestyle="--", linewidth=0.8, label="0.90: the demo's target")
    ax.set_xlabel("training time (minutes)")
    ax.set_ylabel("val mIoU")
    ax.set_title("demo: validation mIoU against training time", fontsize=9)
    ax.set_ylim(0, 1)
    ax.legend(loc="lower right", fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def run_demo(
    out_dir: str | Path = "demo",
    *,
    overrides: list[str] | None = None,
    console: Console | None = None,
    overlays: int = 6,
) -> DemoResult:
    """Train, evaluate and visualise on the synthetic set; return what was measured."""
    console = console or Console()
    start = time.perf_counter()
    out = Path(out_dir)
    config = demo_config(out, overrides)
    console.rule("[bold]atrous demo")
    console.print(
        f"model {config.model.name}, synthetic shapes {config.data.image_size}px, "
        f"{config.data.crop_size}px training crops "
        f"({config.data.train_size} train / {config.data.val_size} val), "
        f"{config.train.epochs} epochs of batch {config.train.batch_size}, output in {out}/"
    )
    result = train(config, out, console=console)
    if result.best_checkpoint is None:
        raise KeyboardInterrupt
    # the default path (the verified fast graph beside best.pt, when training wrote one),
    # scored on full-resolution labels
    segmenter = Segmenter.from_file(result.best_checkpoint, threads=config.train.threads)
    segmenter = segmenter.at_full_resolution()
    console.print(
        f"evaluating the best checkpoint on the validation set, path: {segmenter.path_used} "
        f"({segmenter.path_description})",
        markup=False,
        highlight=False,
    )
    val = build_dataset(config.data, "val")
    evaluation = evaluate(segmenter, val)
    refined = evaluate(segmenter, val, refine=True)
    atomic_write_text(out / "eval.json", json.dumps(evaluation.to_dict(), indent=2))
    atomic_write_text(out / "eval_refined.json", json.dumps(refined.to_dict(), indent=2))
    plot_confusion(evaluation, out / "confusion.png")
    for i in range(min(overlays, len(val))):
        sample = val[i]
        preds = [segmenter.predict(sample.image, refine=r).mask for r in (False, True)]
        _save_panel(
            out / "overlays" / f"{sample.name}.png", sample.image, sample.mask, preds, val.palette
        )
    _plot_curve(result.history, out / "miou_vs_minutes.png")
    minutes = (time.perf_counter() - start) / 60
    summary = _summary(config, result, evaluation, refined, minutes)
    summary["path"] = segmenter.path_used  # the path evaluated: the default one
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2))
    atomic_write_text(out / "summary.md", _markdown(summary))
    _print_summary(console, summary, evaluation, refined, out)
    return DemoResult(out, result, evaluation, refined, minutes, summary)


def _summary(
    config, result: TrainResult, evaluation: EvalResult, refined: EvalResult, minutes: float
) -> dict:
    ips = [h["images_per_second"] for h in result.history]
    return {
        "model": config.model.name,
        "scene_size": config.data.image_size,
        "train_crop": config.data.crop_size,
        "epochs": result.epochs_run,
        "train_images": config.data.train_size,
        "train_minutes": round(result.seconds / 60, 2),
        "total_minutes": round(minutes, 2),
        "train_images_per_second": round(float(np.median(ips)), 1) if ips else None,
        "best_epoch": result.best_epoch,
        # a single class predicted, or no better than all-background (budget too short)
        "degenerate": result.degenerate,
        "val_miou": round(evaluation.miou, 4),
        "val_miou_refined": round(refined.miou, 4),
        "val_pixel_accuracy": round(evaluation.pixel_accuracy, 4),
        "val_mean_accuracy": round(evaluation.mean_accuracy, 4),
        "protocol": evaluation.protocol,
        "per_class_iou": {
            c: round(v, 4)
            for c, v in zip(evaluation.classes, evaluation.per_class_iou, strict=True)
        },
        "per_class_iou_refined": {
            c: round(v, 4) for c, v in zip(refined.classes, refined.per_class_iou, strict=True)
        },
        "miou_vs_minutes": [
            [round(h["elapsed_seconds"] / 60, 2), h["val_miou"]]
            for h in result.history
            if "val_miou" in h
        ],
    }


def _markdown(summary: dict) -> str:
    lines = ["# atrous demo", "", "| metric | value |", "|---|---|"]
    for key, value in summary.items():
        if key not in ("per_class_iou", "per_class_iou_refined", "miou_vs_minutes"):
            lines.append(f"| {key} | {value} |")
    lines += ["", "| class | IoU | IoU refined |", "|---|---|---|"]
    refined = summary["per_class_iou_refined"]
    lines += [f"| {c} | {v} | {refined[c]} |" for c, v in summary["per_class_iou"].items()]
    lines += ["", "| minutes | val mIoU |", "|---|---|"]
    lines += [f"| {m} | {v} |" for m, v in summary["miou_vs_minutes"]]
    return "\n".join(lines) + "\n"


def _print_summary(
    console: Console, summary: dict, evaluation: EvalResult, refined: EvalResult, out: Path
) -> None:
    """The scores table, what they mean, and the files written (by name)."""
    table = Table(title=f"atrous demo: {summary['model']} ({evaluation.protocol} protocol)")
    table.add_column("class")
    table.add_column("IoU", justify="right")
    table.add_column("IoU refined", justify="right")
    table.add_column("accuracy", justify="right")
    rows = zip(evaluation.class_table(), refined.per_class_iou, strict=True)
    for (name, iou, acc), iou_refined in rows:
        table.add_row(name, f"{iou:.4f}", f"{iou_refined:.4f}", f"{acc:.4f}")
    table.add_section()
    table.add_row(
        "[bold]mean",
        f"[bold]{evaluation.miou:.4f}",
        f"[bold]{refined.miou:.4f}",
        f"{evaluation.mean_accuracy:.4f}",
    )
    console.print(table)
    console.print(
        f"pixel accuracy {summary['val_pixel_accuracy']:.4f}; trained {summary['epochs']} "
        f"epochs in {summary['train_minutes']:.1f} min at ~{summary['train_images_per_second']} "
        f"img/s; demo total {summary['total_minutes']:.1f} min"
    )
    console.print(
        "IoU: the network alone; refined: its probabilities snapped to the image's edges by a "
        "guided filter (atrous evaluate --refine)",
        highlight=False,
    )
    console.print(
        f"wrote {out}/summary.md (and .json), {out}/miou_vs_minutes.png (val mIoU against "
        f"minutes, dashed: the 0.90 target), {out}/confusion.png (confusion matrix), "
        f"{out}/overlays/*.png (image | ground truth | network | refined), {out}/best.pt",
        highlight=False,
    )
