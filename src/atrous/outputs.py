"""Where outputs go: input expansion, distinct names short enough for the file system, never an
input, and the files one image yields.

``atrous predict`` over a folder and :func:`atrous.batch.segment_dataset` name and write their
outputs through these functions, so a Ray run and a plain run produce the same files; ``export``,
``quantize`` and ``prune`` write beside their input (:func:`beside_input`).
"""

from __future__ import annotations

import glob
import hashlib
from pathlib import Path, PurePath

import numpy as np

from atrous._atomic import TMP_NAME_EXTRA
from atrous.data.io import write_mask_png
from atrous.errors import InputError
from atrous.visualize import save_overlay

__all__ = [
    "IMAGE_SUFFIXES",
    "NAME_MAX",
    "beside_input",
    "check_output_folder",
    "expand_inputs",
    "fit_name",
    "output_files",
    "output_stems",
    "outputs_present",
    "write_prediction",
]

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm"}

NAME_MAX = 255  # bytes in one file name on Linux, macOS and Windows file systems
# atomic writes go through a temporary name beside the target: leave room for it
_TMP_EXTRA = TMP_NAME_EXTRA
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


def expand_inputs(inputs: list[str]) -> list[Path]:
    """Files, folders (their images, sorted) and glob patterns -> a de-duplicated list of files."""
    files: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            files += sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        elif path.exists():
            files.append(path)
        elif any(ch in item for ch in "*?["):
            matches = sorted(Path(p) for p in glob.glob(item, recursive=True))
            if not matches:
                raise InputError(f"{item}: pattern matches no files")
            files += [p for p in matches if p.is_file()]
        else:
            raise InputError(f"{item}: file not found")
    if not files:
        raise InputError(f"no images found in {', '.join(inputs)}")
    unique: dict[Path, Path] = {}
    for path in files:  # the same file named twice (a/x.png, a/../a/x.png) is segmented once
        unique.setdefault(path.resolve(), path)
    return list(unique.values())


def output_stems(files: list[PurePath]) -> list[str]:
    """Distinct output names (without suffix), so no input's mask overwrites another's: the stem,
    or for a later input whose stem is taken, stem + extension (same folder, ``a.jpg``) or
    folder_stem (another folder, ``y_a``), then folder_stem + extension, then a ``-N`` suffix.
    Names too long for the file system are cut and hashed (:func:`fit_name`)."""
    first: dict[str, PurePath] = {}  # stem -> the first input with it
    taken: set[str] = set()
    names: list[str] = []
    for path in files:
        parent = path.absolute().parent if isinstance(path, Path) else path.parent
        folder = parent.name or "root"
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


def output_files(out: Path, stem: str, overlay: bool) -> list[Path]:
    """The files one image yields: ``<stem>.png`` (palette mask), ``<stem>_overlay.jpg``."""
    files = [out / f"{stem}.png"]
    return files + [out / f"{stem}_overlay.jpg"] if overlay else files


def outputs_present(out: Path, stem: str, overlay: bool) -> bool:
    """Whether an image's outputs are all written (each write is atomic: present = complete)."""
    return all(path.is_file() for path in output_files(out, stem, overlay))


def write_prediction(
    out: Path,
    stem: str,
    image: np.ndarray,
    mask: np.ndarray,
    palette,
    overlay: bool = True,
    alpha: float = 0.5,
) -> list[Path]:
    """Write an image's palette mask (and overlay) under ``out`` atomically; returns the files.

    The overlay goes first, the mask last: a present mask means the image is done."""
    files = output_files(out, stem, overlay)
    if overlay:
        save_overlay(files[1], image, mask, palette, alpha)
    write_mask_png(files[0], mask, palette)
    return files
