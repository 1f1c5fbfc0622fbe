"""Bilinear upsampling of class scores followed by argmax, in row bands to bound memory.

Upsampling C x h x w logits to a 50-megapixel original at once needs 4 x C bytes per pixel
(several GB); doing it band by band keeps the peak at ``budget`` floats whatever the image size.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["upsample_argmax", "BAND_BUDGET"]

BAND_BUDGET = 1 << 24  # floats (64 MB) of upsampled scores held at once


def upsample_argmax(
    logits: torch.Tensor, size: tuple[int, int], budget: int = BAND_BUDGET
) -> np.ndarray:
    """Class ids (uint8, ``size``) of ``logits`` (C, h, w) resized bilinearly to ``size``.

    Same sampling as ``F.interpolate(..., mode='bilinear', align_corners=False)``; images whose
    C x H x W exceeds ``budget`` are done in bands of rows (the rows are interpolated here, the
    columns by ``F.interpolate``), so memory stays bounded.
    """
    c, h, w = logits.shape
    oh, ow = size
    if c * oh * ow <= budget:
        full = F.interpolate(logits[None], size=size, mode="bilinear", align_corners=False)[0]
        return full.argmax(0).to(torch.uint8).numpy()
    rows = max(1, budget // (c * ow))
    src = ((torch.arange(oh, dtype=torch.float64) + 0.5) * (h / oh) - 0.5).clamp(min=0)
    top = src.floor().long().clamp(max=h - 1)
    bottom = (top + 1).clamp(max=h - 1)
    weight = (src - top).to(logits.dtype).view(1, -1, 1)
    labels = np.empty((oh, ow), dtype=np.uint8)
    for start in range(0, oh, rows):
        band = slice(start, start + rows)
        upper, lower = logits[:, top[band]], logits[:, bottom[band]]
        scores = upper + (lower - upper) * weight[:, band]
        scores = F.interpolate(
            scores[None], size=(scores.shape[1], ow), mode="bilinear", align_corners=False
        )[0]
        labels[band] = scores.argmax(0).to(torch.uint8).numpy()
    return labels
