"""``atrous predict`` / ``evaluate`` / ``train --resume``: bad options are one-line errors before
any work, colliding output names stay distinct, and a resume never silently drops a request."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from atrous.cli import app
from atrous.errors import AtrousError

runner = CliRunner()


def _fails(args: list, needle: str) -> str:
    """Run the CLI; it must fail with a project error: one line containing ``needle``."""
    result = runner.invoke(app, [str(a) for a in args])
    assert isinstance(result.exception, AtrousError), f"{result.exit_code}: {result.exception!r}"
    message = str(result.exception)
    assert "\n" not in message and needle in message, message
    return message


def _image(path: Path, seed: int = 0) -> Path:
    """A small random RGB image at ``path`` (format by suffix)."""
    pixels = np.random.default_rng(seed).integers(0, 256, (40, 48, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path


@pytest.mark.parametrize("alpha", ["5", "-1"])
def test_predict_refuses_alpha_outside_0_1_before_writing(small_checkpoint, tmp_path, alpha):
    image, out = _image(tmp_path / "a.png"), tmp_path / "out"
    _fails(["predict", small_checkpoint, image, "--alpha", alpha, "-o", out], "--alpha")
    assert not out.exists()


def test_predict_refuses_out_that_is_a_file(small_checkpoint, tmp_path):
    image, out = _image(tmp_path / "a.png"), tmp_path / "afile"
    out.write_text("keep me")
    _fails(["predict", small_checkpoint, image, "-o", out], f"--out {out}: exists and is not")
    assert out.read_text() == "keep me"


def test_predict_keeps_outputs_with_the_same_stem_apart(small_checkpoint, tmp_path):
    for folder, name, seed in (("x", "a.png", 1), ("x", "a.jpg", 2), ("y", "a.png", 3)):
        _image(tmp_path / folder / name, seed)
    out = tmp_path / "pred"
    args = ["predict", small_checkpoint, tmp_path / "x", tmp_path / "y", "-o", out]
    result = runner.invoke(app, [str(a) for a in [*args, "--engine", "torch"]])
    assert result.exit_code == 0, result.output
    masks = sorted(p.name for p in out.glob("*.png"))
    assert masks == ["a.png", "a.png.png", "y_a.png"]  # a folder lists sorted: a.jpg first
    assert len(list(out.glob("*_overlay.jpg"))) == 3
    assert "wrote 3 mask(s)" in result.output and "a.png -> y_a.png" in result.output
    # the same file named twice (once through '..') is segmented and counted once
    twice = tmp_path / "x" / ".." / "x" / "a.png"
    args = ["predict", small_checkpoint, tmp_path / "x", twice, "-o", tmp_path / "p2"]
    again = runner.invoke(app, [str(a) for a in [*args, "--engine", "torch"]])
    assert again.exit_code == 0, again.output
    assert "wrote 2 mask(s)" in again.output and len(list((tmp_path / "p2").glob("*.png"))) == 2


def test_output_stems_are_unique_and_deterministic():
    from atrous.outputs import output_stems

    files = [Path("x/a.png"), Path("x/a.jpg"), Path("y/a.png"), Path("y/a.jpg"), Path("x/b.png")]
    assert output_stems(files) == ["a", "a.jpg", "y_a", "y_a.jpg", "b"]
    # a file named like a generated name (x/y_a.png) gets another name in turn
    assert output_stems([Path("x/a.png"), Path("y/a.png"), Path("x/y_a.png")]) == [
        "a",
        "y_a",
        "y_a.png",
    ]


@pytest.mark.parametrize("command", ["predict", "evaluate"])
def test_negative_threads_is_a_one_line_error(small_checkpoint, tmp_path, command):
    target = _image(tmp_path / "a.png") if command == "predict" else "synthetic"
    _fails([command, small_checkpoint, target, "--threads", "-2"], "--threads")


@pytest.mark.parametrize(
    ("option", "value", "needle"),
    [
        ("--split", "foo", "--split 'foo'"),
        ("--kind", "bogus", "--kind 'bogus'"),
        ("--limit", "-3", "--limit"),
        ("--limit", "0", "--limit"),
    ],
)
def test_evaluate_refuses_bad_options_before_evaluating(
    small_checkpoint, tmp_path, monkeypatch, option, value, needle
):
    import atrous.cli.evaluate as cli_evaluate

    def forbidden(*args, **kwargs):
        raise AssertionError(f"evaluated despite {option} {value}")

    monkeypatch.setattr(cli_evaluate, "evaluate", forbidden)
    limit = [] if option == "--limit" else ["--limit", "2"]
    _fails(["evaluate", small_checkpoint, "synthetic", option, value, *limit], needle)


def test_evaluate_checks_the_plot_suffix_before_evaluating(small_checkpoint, tmp_path, monkeypatch):
    import atrous.cli.evaluate as cli_evaluate

    def forbidden(*args, **kwargs):
        raise AssertionError("evaluated before checking --plot")

    monkeypatch.setattr(cli_evaluate, "evaluate", forbidden)
    text = tmp_path / "cm.txt"
    _fails(["evaluate", small_checkpoint, "synthetic", "--plot", text], "cannot write .txt files")
    assert not text.exists()
    monkeypatch.undo()  # a suffix matplotlib writes (in any case) passes the check
    plot = tmp_path / "cm.SVG"
    args = ["evaluate", small_checkpoint, "synthetic", "--plot", plot, "--limit", "1", "--json"]
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    assert "<svg" in plot.read_text()


TINY_OVERRIDES = [
    "data.train_size=8", "data.val_size=2", "data.image_size=32", "data.crop_size=32",
    "model.input_size=32", "train.batch_size=8", "train.warmup_iters=1", "train.threads=2",
    "train.max_minutes=null",
]  # fmt: skip


def test_resume_with_fewer_epochs_is_refused_and_keeps_config(tmp_path):
    """More epochs continue (tests/train/test_resume_plan.py); as many as already run or
    fewer are refused with one line, and the folder's config stays the one trained with."""
    run = tmp_path / "run"
    first = runner.invoke(
        app, ["train", "demo", "--out", str(run), "train.epochs=2", *TINY_OVERRIDES]
    )
    assert first.exit_code == 0, first.output
    saved = (run / "config.yaml").read_text()
    args = ["train", "demo", "--resume", "--out", str(run), "train.epochs=1", *TINY_OVERRIDES]
    message = _fails(args, "train.epochs=1 but 2 epochs have already run")
    assert "needs train.epochs above 2" in message
    assert (run / "config.yaml").read_text() == saved
    # the same schedule still resumes (here: finished, so nothing is trained or rewritten)
    same = ["train", "demo", "--resume", "--out", str(run), "train.epochs=2", *TINY_OVERRIDES]
    again = runner.invoke(app, same)
    assert again.exit_code == 0, again.output
    assert "nothing left to train" in again.output


def test_resume_of_a_time_budgeted_run_continues_then_says_it_is_done(tmp_path):
    """train.max_minutes (re-planned after each epoch) still resumes; a finished run says so."""
    from rich.console import Console

    from atrous.config import load_experiment
    from atrous.demo import packaged_config
    from atrous.train import train

    overrides = [o for o in TINY_OVERRIDES if "max_minutes" not in o]
    config = load_experiment(packaged_config("demo"), [*overrides, "train.epochs=2"])
    assert config.train.max_minutes is not None

    def stop_after_first(epoch, row):
        if epoch == 1:
            raise KeyboardInterrupt

    cut = train(config, tmp_path / "run", progress=False, on_epoch_end=stop_after_first)
    assert cut.interrupted and cut.history[0]["planned_epochs"] == 2
    log = io.StringIO()
    resumed = train(
        config, tmp_path / "run", True, progress=False, console=Console(file=log, width=500)
    )
    assert resumed.epochs_run == 2 and not resumed.interrupted
    assert "at epoch 2/2" in log.getvalue()
    log = io.StringIO()
    done = train(
        config, tmp_path / "run", True, progress=False, console=Console(file=log, width=500)
    )
    assert done.epochs_run == 2 and "has run all 2 planned epochs" in log.getvalue()
