"""The ``atrous`` command line: a thin typer layer over the Python API.

Each module registers its commands on the shared app; ``main`` formats errors in one place.
"""

from atrous.cli import (  # noqa: F401  (each module registers its commands)
    bench,
    data,
    export,
    models,
    predict,
    quantize,
    serve,
    train,
)
from atrous.cli._app import app, run

__all__ = ["app", "main"]


def main() -> None:
    """Console-script entry point."""
    run()
