"""``atrous train`` (and ``--qat``: quantization-aware fine-tuning of a trained model)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import typer

from atrous.cli._app import app
from atrous.cli._common import COMPARE_LIMIT, macs_of, model_side, print_comparison
from atrous.cli._output import Output, console
from atrous.config import ExperimentConfig
from atrous.data import build_dataset
from atrous.demo import packaged_config
from atrous.errors import InputError
from atrous.models.zoo import resolve_experiment
from atrous.train import train


def _config_path(config: str) -> Path:
    """A YAML file, or the name of a shipped recipe ('demo', 'voc', 'cityscapes')."""
    path = Path(config)
    if path.is_file() or path.suffix in (".yaml", ".yml"):  # not the demo/ output folder
        return path
    shipped = packaged_config(config)
    return shipped if shipped.is_file() else path


def qat_command(
    experiment: ExperimentConfig, checkpoint: Path | None, out: Path, steps: int | None
) -> None:
    """``atrous train --qat --from CHECKPOINT``: QAT, int8 export, then the comparison table.

    The table measures as ``atrous quantize`` does (the model's input size, the first
    ``COMPARE_LIMIT`` validation images, the one evaluator), with the float model QAT started
    from as its first row, so both commands give that model the same numbers."""
    from atrous.bench.compare import Variant, compare
    from atrous.export.cache import cached_export
    from atrous.quantize.qat import qat_train

    if checkpoint is None:
        raise InputError("--qat needs --from CHECKPOINT (the trained float model)")
    output = Output()
    with output.working("QAT fine-tuning") as progress:
        float_path, int8_path = qat_train(
            experiment, checkpoint, out, steps=steps, progress=every_two_seconds(progress)
        )
        progress("scoring and timing the float, QAT float and QAT int8 models")
    size = model_side(str(checkpoint))
    macs = macs_of(str(checkpoint), (size, size))
    variants = [Variant("float", cached_export(checkpoint, "onnx"), macs)]
    variants += [Variant("QAT float", float_path, macs), Variant("QAT int8", int8_path, macs)]
    rows = compare(
        variants,
        build_dataset(experiment.data, "val"),
        size=(size, size),
        threads=2,
        limit=COMPARE_LIMIT,
    )
    print_comparison(output, rows)
    output.note(f"wrote {int8_path}")


def every_two_seconds(progress: Callable[[str], None]) -> Callable[[int, float], None]:
    """A per-step callback (step, loss) that reports at most one line every two seconds."""
    last = [time.monotonic()]

    def on_step(step: int, loss: float) -> None:
        if time.monotonic() - last[0] >= 2.0:
            last[0] = time.monotonic()
            progress(f"QAT step {step + 1}, loss {loss:.4f}")

    return on_step


@app.command("train")
def train_command(
    config: str = typer.Argument(
        ..., help="experiment YAML (or a shipped recipe: demo, voc, cityscapes)"
    ),
    overrides: list[str] = typer.Argument(None, help="key=value overrides, e.g. train.lr=0.01"),
    out: Path = typer.Option(None, "--out", "-o", help="output folder [default: out_dir]"),
    resume: bool = typer.Option(False, "--resume", help="continue from OUT/last.pt"),
    qat: bool = typer.Option(False, "--qat", help="quantization-aware fine-tuning (with --from)"),
    from_: Path = typer.Option(None, "--from", help="checkpoint to fine-tune with --qat"),
    steps: int = typer.Option(None, help="--qat steps (default: one epoch)"),
) -> None:
    """Train a model from an experiment YAML; checkpoints, metrics and TensorBoard go to OUT.

    Training threads come from the config (train.threads), not from an option.
    """
    experiment = resolve_experiment(_config_path(config), overrides or [])
    if qat or from_ is not None:
        qat_command(experiment, from_, out or Path(experiment.out_dir), steps)
        return
    result = train(experiment, out, resume=resume, console=console)
    if result.interrupted:
        raise typer.Exit(130)
    if result.best_checkpoint is not None:
        console.print(
            f"best val mIoU {result.best_miou:.4f} (epoch {result.best_epoch}): "
            f"{result.best_checkpoint}",
            highlight=False,
        )
