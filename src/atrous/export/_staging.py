"""Stage an export beside its target and replace the target only once the new file is verified.

An interrupted or failed re-export (Ctrl-C, a parity failure, SIGKILL) leaves the old file as it
was. The staging folder is ``.NAME.pidNNN.XXXX.atrous.tmp.d`` beside the target, so the file
inside keeps its real name and suffix (engines pick their reader by suffix; an OpenVINO .xml finds
its .bin by name) and ``atrous._atomic`` removes folders left by killed processes.
"""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

from atrous._atomic import staged_path

__all__ = ["companions", "publish", "staged_path"]

# files written beside the main one, by suffix (an OpenVINO IR is an .xml and its .bin; an
# ncnn model a .param, its .bin and the card beside them)
_COMPANIONS = {".xml": (".bin",), ".param": (".bin", ".param.card.json")}


def companions(path: Path) -> list[Path]:
    """The files that make up the model at ``path``: itself first, then its companions."""
    return [path] + [path.with_suffix(s) for s in _COMPANIONS.get(path.suffix, ())]


def publish(staged: Path, path: Path) -> None:
    """Move the verified ``staged`` file (and its companions) over ``path``.

    Companions move first, so a new .xml never points at an old .bin; Ctrl-C is held off for
    the few renames so the pair is never split.
    """
    moves = list(zip(companions(staged), companions(path), strict=True))[::-1]
    main = threading.current_thread() is threading.main_thread()
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT}) if main else None
    try:
        for src, dst in moves:
            os.replace(src, dst)
    finally:
        if blocked is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
