"""The typer app, the shared console and the one place errors are formatted."""

from __future__ import annotations

import json
import os
import sys
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from atrous.errors import AtrousError, InputError

if TYPE_CHECKING:
    from atrous.card import ModelCard

__all__ = ["app", "console", "err_console", "print_table", "print_json", "card_if_synthetic", "run"]

app = typer.Typer(
    name="atrous",
    help="DeepLabV3 / DeepLabV3+ segmentation, fast and accurate on CPUs.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console()
err_console = Console(stderr=True)


def print_table(title: str, columns: list[str], rows: list[list[Any]]) -> None:
    """Print rows as a rich table."""
    table = Table(title=title, show_lines=False)
    for c in columns:
        table.add_column(c, justify="left" if c == columns[0] else "right", no_wrap=c == columns[0])
    for row in rows:
        table.add_row(*[_fmt(v) for v in row])
    console.print(table)


def print_json(data: Any) -> None:
    """Print data as indented JSON on stdout (for ``--json``)."""
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def card_if_synthetic(model: str, *data: str | None) -> ModelCard | None:
    """``model``'s card when a DATA argument is 'synthetic', which then means the model's own
    synthetic set (``atrous.data.open_dataset``); None otherwise, without loading anything."""
    if "synthetic" not in data:
        return None
    from atrous.sources import source_card

    return source_card(model)


def check_threads(threads: int | None) -> int | None:
    """--threads as given (None: all cores); below 1 it is refused in one line before any work."""
    if threads is not None and threads < 1:
        raise InputError(f"--threads: expected a positive number of threads, got {threads}")
    return threads


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def run() -> None:
    """Entry point: run the app; AtrousError becomes one line on stderr and exit code 2.

    Set ATROUS_DEBUG=1 to see the full traceback instead.
    """
    try:
        app()
    except AtrousError as exc:
        if os.environ.get("ATROUS_DEBUG"):
            raise
        err_console.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)
