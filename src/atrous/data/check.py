"""``atrous data check``: validate a dataset folder before training on it.

Finds unpaired files, image/mask size mismatches, label values outside the class list, RGB colour
masks and unreadable files, and counts pixels per class. Every problem names its file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from atrous.data.cityscapes import CityscapesSegmentation
from atrous.data.dataset import IGNORE_INDEX, FileDataset
from atrous.data.folder import FolderDataset
from atrous.data.io import read_image, read_mask
from atrous.data.voc import VOCSegmentation
from atrous.errors import InputError

__all__ = ["KINDS", "CheckReport", "check_dataset", "check_kind", "detect_kind"]


@dataclass
class CheckReport:
    """What ``check_dataset`` found: samples checked, problems (one line each), class pixels."""

    root: str
    kind: str
    split: str | None
    samples: int
    classes: list[str]
    class_pixels: list[int]
    ignore_pixels: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no problem was found."""
        return not self.problems

    def class_table(self) -> list[list]:
        """Rows of (id, class, pixels, fraction of labelled pixels)."""
        total = max(1, sum(self.class_pixels))
        return [
            [i, name, n, n / total]
            for i, (name, n) in enumerate(zip(self.classes, self.class_pixels, strict=True))
        ]

    def to_dict(self) -> dict:
        """JSON-able summary."""
        return {
            "root": self.root,
            "kind": self.kind,
            "split": self.split,
            "samples": self.samples,
            "ok": self.ok,
            "problems": self.problems,
            "ignore_pixels": self.ignore_pixels,
            "classes": {name: n for name, n in zip(self.classes, self.class_pixels, strict=True)},
        }


LOSSY_SUFFIXES = (".jpg", ".jpeg", ".jpe")
KINDS = ("voc", "cityscapes", "folder")  # the on-disk layouts detect_kind tells apart


def check_kind(kind: str | None) -> None:
    """Refuse a dataset ``kind`` that is not one of the on-disk layouts (None: detect it)."""
    if kind is not None and kind not in KINDS:
        raise InputError(f"--kind '{kind}': expected one of {', '.join(KINDS)}")


def detect_kind(root: str | Path) -> str:
    """Guess the layout of ``root``: 'voc', 'cityscapes' or 'folder'."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root}: dataset folder not found")
    if any((root / p / "JPEGImages").is_dir() for p in (".", "VOC2012", "VOCdevkit/VOC2012")):
        return "voc"
    if (root / "leftImg8bit").is_dir():
        return "cityscapes"
    if (root / "images").is_dir() or any((root / s / "images").is_dir() for s in ("train", "val")):
        return "folder"
    raise InputError(
        f"{root}: unknown layout (expected VOC JPEGImages/, Cityscapes leftImg8bit/, "
        "or images/ + masks/)"
    )


def _open_dataset(root: Path, kind: str, split: str | None) -> FileDataset:
    if kind == "voc":
        return VOCSegmentation(root, split or "val")
    if kind == "cityscapes":
        return CityscapesSegmentation(root, split or "val")
    return FolderDataset(root, split)


def check_dataset(
    root: str | Path, kind: str | None = None, split: str | None = None, limit: int | None = None
) -> CheckReport:
    """Check every (image, mask) pair of a dataset; return a report (raises only if unopenable)."""
    root = Path(root)
    check_kind(kind)
    kind = kind or detect_kind(root)
    dataset = _open_dataset(root, kind, split)
    n = len(dataset.classes)
    counts = np.zeros(256, dtype=np.int64)
    problems = [f"{p}: has no matching image/mask" for p in dataset.unpaired]
    pairs = dataset.pairs[:limit] if limit else dataset.pairs
    for image_path, mask_path in pairs:
        try:
            height, width = read_image(image_path).shape[:2]  # decoded as training reads it
            mask = read_mask(mask_path)
        except InputError as exc:
            problems.append(str(exc))
            continue
        if dataset.label_map is not None:
            mask = dataset.label_map[mask]
        if Path(mask_path).suffix.lower() in LOSSY_SUFFIXES:
            problems.append(
                f"{mask_path}: mask saved as JPEG, whose lossy compression invents class ids "
                "along edges; save masks as PNG"
            )
        if mask.shape != (height, width):
            problems.append(
                f"{mask_path}: mask is {mask.shape[1]}x{mask.shape[0]}, image is {width}x{height}"
            )
            continue  # a mask that does not fit its image is not counted in the class table
        values = np.bincount(mask.reshape(-1), minlength=256)
        counts += values
        bad = [v for v in np.flatnonzero(values) if v >= n and v != IGNORE_INDEX]
        if bad:
            shown = ", ".join(str(v) for v in bad[:6])
            problems.append(f"{mask_path}: label values {shown} outside the {n} classes")
    return CheckReport(
        root=str(root),
        kind=kind,
        split=split,
        samples=len(pairs),
        classes=list(dataset.classes),
        class_pixels=[int(c) for c in counts[:n]],
        ignore_pixels=int(counts[IGNORE_INDEX]),
        problems=problems,
    )
