"""The ``atrous`` command line: a thin typer layer over the Python API.

Each module registers its commands on the shared app; ``main`` formats errors in one place.
"""

import atrous.cli.bench  # noqa: F401  (benchmark, profile, optimize)
from atrous.cli import data, export, models, predict, serve, train  # noqa: F401  (registers commands)
from atrous.cli._app import app, run

__all__ = ["app", "main"]


def main() -> None:
    """Console-script entry point."""
    run()
