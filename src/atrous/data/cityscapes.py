"""Cityscapes fine annotations: leftImg8bit images, gtFine labelIds mapped to the 19 trainIds.

Expected under ``root``: ``leftImg8bit/<split>/<city>/*_leftImg8bit.png`` and
``gtFine/<split>/<city>/*_gtFine_labelIds.png``. Label ids outside the 19 evaluated classes
become 255 (ignore).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from atrous.data.dataset import IGNORE_INDEX, FileDataset
from atrous.data.palettes import CITYSCAPES_CLASSES, CITYSCAPES_PALETTE
from atrous.errors import InputError

__all__ = ["CityscapesSegmentation", "LABEL_TO_TRAIN_ID", "label_to_train_id_table"]

# Cityscapes labelId of each of the 19 training classes, in trainId order.
LABEL_TO_TRAIN_ID = {
    7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9,
    23: 10, 24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18,
}  # fmt: skip


def label_to_train_id_table() -> np.ndarray:
    """A 256-entry lookup table labelId -> trainId (255 for every unevaluated id)."""
    table = np.full(256, IGNORE_INDEX, dtype=np.uint8)
    for label_id, train_id in LABEL_TO_TRAIN_ID.items():
        table[label_id] = train_id
    return table


def cityscapes_pairs(root: str | Path, split: str) -> tuple[list[tuple[Path, Path]], list[Path]]:
    """(image, labelIds mask) pairs of a split, and images without a mask."""
    root = Path(root)
    image_dir = root / "leftImg8bit" / split
    if not image_dir.is_dir():
        raise InputError(f"{root}: no leftImg8bit/{split}/ folder (not a Cityscapes root?)")
    pairs, missing = [], []
    for image in sorted(image_dir.glob("*/*_leftImg8bit.png")):
        stem = image.name.removesuffix("_leftImg8bit.png")
        mask = root / "gtFine" / split / image.parent.name / f"{stem}_gtFine_labelIds.png"
        if mask.is_file():
            pairs.append((image, mask))
        else:
            missing.append(image)
    return pairs, missing


class CityscapesSegmentation(FileDataset):
    """Cityscapes with gtFine labels, 19 classes, split 'train', 'val' or 'test'."""

    def __init__(self, root: str | Path, split: str = "val") -> None:
        pairs, missing = cityscapes_pairs(root, split)
        super().__init__(
            pairs,
            list(CITYSCAPES_CLASSES),
            list(CITYSCAPES_PALETTE),
            name=f"cityscapes-{split}",
            label_map=label_to_train_id_table(),
            unpaired=missing,
        )
