"""A plain folder layout: ``images/`` and ``masks/`` with matching file stems, classes in YAML.

``root/classes.yaml`` holds either a list of class names or a mapping with ``classes`` (and
optionally ``palette``, a list of [r, g, b]). A split may live in ``root/<split>/images`` and
``root/<split>/masks``; without split folders, ``root/images`` and ``root/masks`` serve every split.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from atrous.data.dataset import FileDataset
from atrous.data.palettes import voc_palette
from atrous.errors import ConfigError, InputError

__all__ = ["FolderDataset", "folder_pairs", "read_classes", "IMAGE_SUFFIXES"]

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm"}


def read_classes(root: str | Path) -> tuple[list[str], list[tuple[int, int, int]]]:
    """Class names and palette from ``root/classes.yaml`` (palette defaults to VOC colours)."""
    path = Path(root) / "classes.yaml"
    if not path.is_file():
        path = Path(root).parent / "classes.yaml"
    if not path.is_file():
        raise InputError(f"{Path(root) / 'classes.yaml'}: class list not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError):
        raise ConfigError(f"{path}: malformed YAML") from None
    classes = data if isinstance(data, list) else data.get("classes")
    if not isinstance(classes, list) or not classes:
        raise ConfigError(f"{path}: expected a list of class names (or a 'classes' key)")
    palette = data.get("palette") if isinstance(data, dict) else None
    if palette is None:
        palette = voc_palette(len(classes))
    if len(palette) < len(classes):
        raise ConfigError(f"{path}: palette has {len(palette)} colours for {len(classes)} classes")
    return [str(c) for c in classes], [tuple(int(v) for v in c) for c in palette]


def split_root(root: str | Path, split: str | None) -> Path:
    """``root/<split>`` when it has images/, otherwise ``root``."""
    root = Path(root)
    if split and (root / split / "images").is_dir():
        return root / split
    if not (root / "images").is_dir():
        raise InputError(f"{root}: no images/ folder (expected images/ and masks/)")
    return root


def folder_pairs(root: str | Path, split: str | None = None) -> tuple[list, list[Path]]:
    """(image, mask) pairs matched by stem, and the files that have no partner."""
    base = split_root(root, split)
    mask_dir = base / "masks"
    if not mask_dir.is_dir():
        raise InputError(f"{base}: no masks/ folder next to images/")
    images = {p.stem: p for p in sorted((base / "images").iterdir()) if _is_image(p)}
    masks = {p.stem: p for p in sorted(mask_dir.iterdir()) if _is_image(p)}
    pairs = [(images[s], masks[s]) for s in sorted(images) if s in masks]
    unpaired = [images[s] for s in sorted(images) if s not in masks]
    unpaired += [masks[s] for s in sorted(masks) if s not in images]
    return pairs, unpaired


def _is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES


class FolderDataset(FileDataset):
    """Images and id masks from a folder, classes from ``classes.yaml``."""

    def __init__(self, root: str | Path, split: str | None = None) -> None:
        pairs, unpaired = folder_pairs(root, split)
        classes, palette = read_classes(split_root(root, split))
        super().__init__(pairs, classes, palette, f"folder-{Path(root).name}", unpaired=unpaired)
