"""The dataset contract: raw samples (RGB image, id mask, name) plus classes and palette.

Datasets return untouched samples; training wraps them with augmentation and normalisation, and
evaluation feeds the raw image through the Segmenter, so every engine is scored by the same code.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from atrous.data.io import read_image, read_mask
from atrous.errors import InputError

__all__ = ["Sample", "SegmentationDataset", "FileDataset", "IGNORE_INDEX"]

IGNORE_INDEX = 255


@dataclass
class Sample:
    """One example: H x W x 3 RGB uint8 image, H x W uint8 ids (255 = ignore), a name."""

    image: np.ndarray
    mask: np.ndarray
    name: str
    source: str = ""  # the mask file, for error messages (empty for generated samples)


class SegmentationDataset:
    """Base class: indexable samples plus ``classes``, ``palette`` and ``ignore_index``.

    Subclasses implement ``__len__`` and ``load(index)``; ``__getitem__`` adds bounds checks.
    """

    classes: list[str]
    palette: list[tuple[int, int, int]]
    ignore_index: int = IGNORE_INDEX
    name: str = "dataset"

    def __len__(self) -> int:
        raise NotImplementedError

    def load(self, index: int) -> Sample:
        """Read sample ``index`` (0 <= index < len)."""
        raise NotImplementedError

    def __getitem__(self, index: int) -> Sample:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        return self.load(index % len(self))

    def __iter__(self) -> Iterator[Sample]:
        for i in range(len(self)):
            yield self.load(i)

    @property
    def num_classes(self) -> int:
        """Number of classes (ids 0 .. num_classes - 1 are valid labels)."""
        return len(self.classes)


class FileDataset(SegmentationDataset):
    """A dataset backed by (image file, mask file) pairs, with an optional label mapping.

    ``label_map`` is a 256-entry lookup table applied to raw mask values (e.g. Cityscapes
    labelIds -> trainIds); without it mask values are used as they are. ``unpaired`` lists files
    found without their partner (skipped here, reported by ``atrous data check``).
    """

    def __init__(
        self,
        pairs: list[tuple[Path, Path]],
        classes: list[str],
        palette: list[tuple[int, int, int]],
        name: str,
        label_map: np.ndarray | None = None,
        unpaired: list[Path] | None = None,
    ) -> None:
        if not pairs:
            raise InputError(f"{name}: no image/mask pairs found")
        self.unpaired = list(unpaired or [])
        self.pairs = pairs
        self.classes = list(classes)
        self.palette = list(palette)
        self.name = name
        self.label_map = label_map

    def __len__(self) -> int:
        return len(self.pairs)

    def load(self, index: int) -> Sample:
        """Read the image and its mask, checking that their sizes agree."""
        image_path, mask_path = self.pairs[index]
        image = read_image(image_path)
        mask = read_mask(mask_path)
        if self.label_map is not None:
            mask = self.label_map[mask]
        if image.shape[:2] != mask.shape:
            raise InputError(
                f"{mask_path}: mask is {mask.shape[1]}x{mask.shape[0]} but its image is "
                f"{image.shape[1]}x{image.shape[0]}"
            )
        return Sample(image=image, mask=mask, name=image_path.stem, source=str(mask_path))
