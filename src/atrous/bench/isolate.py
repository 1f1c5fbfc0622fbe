"""Run a measurement in a child process, so a native crash in a runtime (OpenVINO has
segfaulted timing an int8 graph) becomes one line in the table instead of killing atrous."""

from __future__ import annotations

import multiprocessing
import signal
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

__all__ = ["run_isolated"]


def _child(conn: Connection, func: Callable[..., Any], args: tuple) -> None:
    """Run ``func(*args)`` and send ('ok', value) or ('error', one line) to the parent."""
    try:
        conn.send(("ok", func(*args)))
    except Exception as exc:  # the parent reports it as one line
        conn.send(
            ("error", f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
        )
    finally:
        conn.close()


def run_isolated(func: Callable[..., Any], *args: Any) -> tuple[Any, str | None]:
    """``(func(*args), None)`` computed in a spawned child process, or ``(None, why)`` when the
    child died (a signal) or raised. ``func`` and ``args`` must be picklable."""
    ctx = multiprocessing.get_context("spawn")
    receive, send = ctx.Pipe(duplex=False)
    child = ctx.Process(target=_child, args=(send, func, args), daemon=True)
    child.start()
    send.close()
    try:
        kind, value = receive.recv()
    except EOFError:  # the child died without answering
        kind, value = "died", None
    child.join()
    if kind == "ok":
        return value, None
    if kind == "error":
        return None, value
    code = child.exitcode or 0
    how = f"signal {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
    return None, f"the runtime crashed ({how}); not measured"
