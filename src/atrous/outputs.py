"""Names of the files atrous writes: distinct, short enough for the file system, never an input.

``predict`` derives mask and overlay names from input file names; ``export``, ``quantize`` and
``prune`` write beside their input. Both are decided here so every front end names files alike.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from atrous._atomic import TMP_SUFFIX
from atrous.errors import InputError

__all__ = ["NAME_MAX", "beside_input", "check_output_folder", "fit_name", "output_stems"]

NAME_MAX = 255  # bytes in one file name on Linux, macOS and Windows file systems
# atomic writes go through ".NAME.XXXXXXXX.atrous.tmp" beside the target: leave room for it
_TMP_EXTRA = len("..") + 8 + len(TMP_SUFFIX)
LONGEST_ENDING = "_overlay.jpg"  # the longest ending predict appends to a stem


def fit_name(stem: str, ending: str = LONGEST_ENDING) -> str:
    """``stem`` unchanged when ``stem + ending`` (and its temporary) fits in a file name; else
    cut at a UTF-8 boundary and tagged with a hash of the whole stem, so cut names stay distinct."""
    budget = NAME_MAX - _TMP_EXTRA - len(ending.encode())
    raw = stem.encode()
    if len(raw) <= budget:
        return stem
    digest = hashlib.sha256(raw).hexdigest()[:10]
    head = raw[: budget - len(digest) - 1].decode("utf-8", errors="ignore")
    return f"{head}~{digest}"


def output_stems(files: list[Path]) -> list[str]:
    """Distinct output names (without suffix), so no input's mask overwrites another's: the stem,
    or for a later input whose stem is taken, stem + extension (same folder, ``a.jpg``) or
    folder_stem (another folder, ``y_a``), then folder_stem + extension, then a ``-N`` suffix.
    Names too long for the file system are cut and hashed (:func:`fit_name`)."""
    first: dict[str, Path] = {}  # stem -> the first input with it
    taken: set[str] = set()
    names: list[str] = []
    for path in files:
        folder = path.absolute().parent.name or "root"
        same_folder = first.setdefault(path.stem.casefold(), path).parent == path.parent
        tagged = path.name if same_folder else f"{folder}_{path.stem}"
        candidates = [fit_name(c) for c in (path.stem, tagged, f"{folder}_{path.name}")]
        name = next((c for c in candidates if c.casefold() not in taken), None)
        count = 2
        while name is None or name.casefold() in taken:
            name, count = fit_name(f"{candidates[-1]}-{count}"), count + 1
        taken.add(name.casefold())
        names.append(name)
    return names


def check_output_folder(out: Path, inputs: list[Path]) -> None:
    """Refuse an output folder that is not a folder, or that holds any of the inputs: masks and
    overlays written there could replace an input (``a.png``, ``b_overlay.jpg``) and a later run
    would take them for inputs."""
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out}: exists and is not a folder")
    target = out.resolve()
    inside = [p for p in inputs if p.resolve().parent == target]
    if inside:
        raise InputError(
            f"--out {out}: holds the input {inside[0].name}"
            + (f" and {len(inside) - 1} more" if len(inside) > 1 else "")
            + "; write the masks to another folder"
        )


def beside_input(source: str | Path, ending: str) -> Path:
    """Where a file made from ``source`` goes by default: beside it (``model.pt`` ->
    ``model<ending>`` in the same folder); for a zoo name, in the current folder."""
    path = Path(source)
    if path.is_file():
        return path.with_name(fit_name(path.stem, ending) + ending)
    return Path(fit_name(path.name, ending) + ending)
