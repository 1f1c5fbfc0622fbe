"""PASCAL VOC 2012 segmentation layout, with SBD "trainaug" labels when present.

Expected under ``root`` (or ``root/VOC2012``, ``root/VOCdevkit/VOC2012``): ``JPEGImages/*.jpg``,
``SegmentationClass/*.png`` (palette PNGs, 255 = boundary/ignore) and
``ImageSets/Segmentation/<split>.txt``. The ``trainaug`` split reads ``SegmentationClassAug``
(the usual conversion of SBD to VOC-style PNGs) and its list file.
"""

from __future__ import annotations

from pathlib import Path

from atrous.data.dataset import FileDataset
from atrous.data.palettes import VOC_CLASSES, voc_palette
from atrous.errors import InputError

__all__ = ["VOCSegmentation", "find_voc_root"]


def find_voc_root(root: str | Path) -> Path:
    """The folder holding JPEGImages: ``root`` itself or its VOC2012 / VOCdevkit/VOC2012."""
    root = Path(root)
    for candidate in (root, root / "VOC2012", root / "VOCdevkit" / "VOC2012"):
        if (candidate / "JPEGImages").is_dir():
            return candidate
    raise InputError(f"{root}: not a VOC 2012 folder (no JPEGImages/ found)")


def _split_file(root: Path, split: str) -> Path:
    for candidate in (
        root / "ImageSets" / "Segmentation" / f"{split}.txt",
        root / f"{split}.txt",
        root / "ImageSets" / "SegmentationAug" / f"{split}.txt",
    ):
        if candidate.is_file():
            return candidate
    raise InputError(
        f"{root}: no list file for split '{split}' (ImageSets/Segmentation/{split}.txt)"
    )


def voc_pairs(root: str | Path, split: str) -> tuple[list[tuple[Path, Path]], list[Path]]:
    """(image, mask) pairs of a split, and the listed ids whose image or mask is missing."""
    root = find_voc_root(root)
    mask_dir = root / ("SegmentationClassAug" if split == "trainaug" else "SegmentationClass")
    if not mask_dir.is_dir():
        raise InputError(f"{mask_dir}: mask folder not found")
    pairs, missing = [], []
    for line in _split_file(root, split).read_text().split("\n"):
        stem = line.strip().split(" ")[0]
        if not stem:
            continue
        stem = Path(stem).stem
        image, mask = root / "JPEGImages" / f"{stem}.jpg", mask_dir / f"{stem}.png"
        if image.is_file() and mask.is_file():
            pairs.append((image, mask))
        else:
            missing.append(mask if image.is_file() else image)
    return pairs, missing


class VOCSegmentation(FileDataset):
    """PASCAL VOC 2012 (21 classes including background), split 'train', 'val' or 'trainaug'."""

    def __init__(self, root: str | Path, split: str = "val") -> None:
        pairs, missing = voc_pairs(root, split)
        super().__init__(
            pairs, list(VOC_CLASSES), voc_palette(21), f"voc-{split}", unpaired=missing
        )
