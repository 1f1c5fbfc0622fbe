"""Atomic file writes: write to a temporary file beside the target, then rename over it.

A crash or Ctrl-C mid-write leaves either the old file or nothing, never a partial file. A
SIGKILL cannot be caught, so temporaries carry the writer's process id; the next write to the same
folder (or the next scratch folder made) removes those whose writer is gone.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = [
    "atomic_path",
    "atomic_write_text",
    "atomic_write_bytes",
    "remove_stale_temporaries",
    "scratch_directory",
    "staged_path",
    "TMP_NAME_EXTRA",
]

TMP_SUFFIX = ".atrous.tmp"
# what atomic_path adds to a file name: ".NAME.pidNNN.XXXXXXXX.atrous.tmp" (pids up to 10 digits)
TMP_NAME_EXTRA = len("..pid.") + 10 + 8 + len(TMP_SUFFIX)
_PID = re.compile(r"[.-]pid(\d+)[.-]")
SCRATCH_PREFIX = "atrous-"


def _writer_alive(name: str) -> bool:
    """Whether the process that named this temporary (``.pidNNN.`` or ``-pidNNN-``) still runs.

    Names without a pid (written before pids were recorded, or by hand) count as dead.
    """
    match = _PID.search(name)
    if match is None:
        return False
    pid = int(match.group(1))
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def _current_umask() -> int:
    """The process umask (read by setting and restoring it; there is no getter)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; rename it to ``path`` on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _clean_once(path.parent)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{path.name}.pid{os.getpid()}.", suffix=TMP_SUFFIX, dir=path.parent
    )
    os.close(fd)
    tmp_path = Path(tmp)
    # mkstemp makes the file private (0600); give it the mode a plain open() would (0644 under
    # the usual umask), so masks, models and reports can be shared and served
    os.chmod(tmp_path, 0o666 & ~_current_umask())
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


_CLEANED: set[Path] = set()


def _clean_once(folder: Path) -> None:
    """Remove stale temporaries from ``folder`` on this process's first write there (a folder
    of many outputs is scanned once, not once per file)."""
    key = folder.resolve()
    if key not in _CLEANED:
        remove_stale_temporaries(folder)
        _CLEANED.add(key)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def remove_stale_temporaries(folder: str | Path) -> list[Path]:
    """Delete temporaries that a killed process (SIGKILL, power loss) left in ``folder``.

    Only our own ``.NAME.XXXX.atrous.tmp`` files (and ``.NAME.XXXX.atrous.tmp.d`` folders) whose
    writing process is gone are touched; returns what was removed.
    """
    stale = [
        p
        for p in sorted(Path(folder).glob(f".*{TMP_SUFFIX}*"))
        if p.name.endswith((TMP_SUFFIX, TMP_SUFFIX + ".d")) and not _writer_alive(p.name)
    ]
    for path in stale:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    return stale


def scratch_directory(kind: str, dir: str | Path | None = None) -> tempfile.TemporaryDirectory:
    """A ``TemporaryDirectory`` named ``atrous-KIND-pidNNN-XXXX`` (in ``dir`` or the system temp
    folder); scratch folders of ours left by killed processes there are removed first."""
    parent = Path(dir) if dir is not None else Path(tempfile.gettempdir())
    for old in parent.glob(f"{SCRATCH_PREFIX}*-pid*-*"):
        if old.is_dir() and not _writer_alive(old.name):
            shutil.rmtree(old, ignore_errors=True)
    return tempfile.TemporaryDirectory(prefix=f"{SCRATCH_PREFIX}{kind}-pid{os.getpid()}-", dir=dir)


@contextlib.contextmanager
def staged_path(path: str | Path) -> Iterator[Path]:
    """Yield ``path``'s name inside a fresh staging folder beside it (``.NAME.pidNNN.XXXX
    .atrous.tmp.d``, so the file keeps its real name and suffix); the folder is removed on exit
    with whatever the caller did not move out of it, and left by a killed writer, on the next
    write to that folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path.parent)
    folder = Path(
        tempfile.mkdtemp(
            prefix=f".{path.name}.pid{os.getpid()}.", suffix=TMP_SUFFIX + ".d", dir=path.parent
        )
    )
    try:
        yield folder / path.name
    finally:
        shutil.rmtree(folder, ignore_errors=True)
