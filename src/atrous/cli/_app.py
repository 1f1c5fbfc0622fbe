"""The typer app and the one place errors are formatted (``ATROUS_DEBUG=1``: the traceback)."""

from __future__ import annotations

import os
import sys

import typer
from rich.markup import escape

from atrous.cli._output import err_console
from atrous.errors import AtrousError

__all__ = ["app", "run"]

app = typer.Typer(
    name="atrous",
    help="DeepLabV3 / DeepLabV3+ segmentation, fast and accurate on CPUs.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


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
