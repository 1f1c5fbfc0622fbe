"""``atrous demo``: train and evaluate on the synthetic set in a few minutes."""

from __future__ import annotations

from pathlib import Path

import typer

from atrous.cli._app import app
from atrous.cli._options import OutFolder
from atrous.cli._output import console
from atrous.demo import run_demo


@app.command("demo")
def demo_command(
    out: OutFolder = Path("demo"),
    overrides: list[str] = typer.Argument(None, help="key=value overrides of configs/demo.yaml"),
) -> None:
    """Train and evaluate on the synthetic set in a few minutes; write overlays and a summary."""
    run_demo(out, overrides=overrides or [], console=console)
