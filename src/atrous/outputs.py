"""Where predictions go: input expansion, distinct output names and the files one image yields.

``atrous predict`` over a folder and :func:`atrous.batch.segment_dataset` name and write their
outputs through these functions, so a Ray run and a plain run produce the same files.
"""

from __future__ import annotations

import glob
from pathlib import Path, PurePath

import numpy as np

from atrous.data.io import write_mask_png
from atrous.errors import InputError
from atrous.visualize import save_overlay

__all__ = [
    "IMAGE_SUFFIXES",
    "expand_inputs",
    "output_stems",
    "check_out_folder",
    "output_files",
    "outputs_present",
    "write_prediction",
]

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm"}


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
    folder_stem (another folder, ``y_a``), then folder_stem + extension, then a ``-N`` suffix."""
    first: dict[str, PurePath] = {}  # stem -> the first input with it
    taken: set[str] = set()
    names: list[str] = []
    for path in files:
        parent = path.absolute().parent if isinstance(path, Path) else path.parent
        folder = parent.name or "root"
        same_folder = first.setdefault(path.stem.casefold(), path).parent == path.parent
        tagged = path.name if same_folder else f"{folder}_{path.stem}"
        candidates = [path.stem, tagged, f"{folder}_{path.name}"]
        name = next((c for c in candidates if c.casefold() not in taken), None)
        count = 2
        while name is None or name.casefold() in taken:
            name, count = f"{candidates[-1]}-{count}", count + 1
        taken.add(name.casefold())
        names.append(name)
    return names


def check_out_folder(out: Path) -> None:
    """Refuse an --out that exists but is not a folder, before any model is loaded."""
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out}: exists and is not a folder")


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
