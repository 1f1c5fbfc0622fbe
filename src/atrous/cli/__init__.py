"""The ``atrous`` command line: a thin typer layer over the Python API.

One module per verb registers its command on the shared app (``_app``); the shared options live
in ``_options`` and every verb prints through ``_output.Output``; ``main`` formats errors in one
place.
"""

from atrous.cli import (  # noqa: F401  (each module registers its command)
    benchmark,
    convert,
    data,
    demo,
    evaluate,
    export,
    inspect,
    optimize,
    predict,
    profile,
    prune,
    quantize,
    serve,
    train,
    zoo,
)
from atrous.cli._app import app, run

__all__ = ["app", "main"]


def main() -> None:
    """Console-script entry point."""
    run()
