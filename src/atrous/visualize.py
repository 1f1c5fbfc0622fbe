"""Colour masks, overlays and legends for predictions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from atrous._atomic import atomic_path
from atrous.data.palettes import palette_array

__all__ = ["colorize", "overlay", "legend", "save_overlay"]


def colorize(mask: np.ndarray, palette) -> np.ndarray:
    """H x W class ids -> H x W x 3 RGB uint8 through the palette lookup table."""
    return palette_array(palette)[mask]


def overlay(
    image: np.ndarray, mask: np.ndarray, palette, alpha: float = 0.5, skip_background: bool = True
) -> np.ndarray:
    """Blend the colourised mask over an RGB image (integer arithmetic, no overflow)."""
    colours = colorize(mask, palette).astype(np.uint16)
    weight = int(round(alpha * 256))
    blended = (image.astype(np.uint16) * (256 - weight) + colours * weight) >> 8
    out = blended.astype(np.uint8)
    if skip_background:
        out[mask == 0] = image[mask == 0]
    return out


def legend(
    mask: np.ndarray, classes: list[str], palette
) -> list[tuple[str, tuple[int, int, int], float]]:
    """(class name, colour, pixel fraction) for each class present, largest first."""
    counts = np.bincount(mask.reshape(-1), minlength=len(classes))
    table = palette_array(palette)
    rows = [
        (classes[i] if i < len(classes) else str(i), tuple(int(c) for c in table[i]), n / mask.size)
        for i, n in enumerate(counts)
        if n
    ]
    return sorted(rows, key=lambda r: -r[2])


def save_overlay(
    path: str | Path, image: np.ndarray, mask: np.ndarray, palette, alpha: float = 0.5
) -> None:
    """Write the overlay as JPEG or PNG (by suffix), atomically."""
    path = Path(path)
    fmt = "JPEG" if path.suffix.lower() in (".jpg", ".jpeg") else "PNG"
    with atomic_path(path) as tmp:
        Image.fromarray(overlay(image, mask, palette, alpha)).save(tmp, format=fmt, quality=90)
