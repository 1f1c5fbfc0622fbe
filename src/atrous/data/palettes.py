"""Class names and colour palettes: they live in ``atrous.palettes`` (below the models, whose zoo
cards need them); this name stays for the dataset readers that import it from here."""

from atrous.palettes import (
    ADE20K_CLASSES,
    CITYSCAPES_CLASSES,
    CITYSCAPES_PALETTE,
    VOC_CLASSES,
    palette_array,
    palette_for,
    voc_palette,
)

__all__ = [
    "VOC_CLASSES",
    "CITYSCAPES_CLASSES",
    "CITYSCAPES_PALETTE",
    "ADE20K_CLASSES",
    "voc_palette",
    "palette_for",
    "palette_array",
]
