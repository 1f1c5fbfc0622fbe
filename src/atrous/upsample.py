"""Bilinear upsampling of class scores followed by argmax, in row bands to bound memory.

Upsampling C x h x w logits to a 50-megapixel original at once needs 4 x C bytes per pixel
(several GB); doing it band by band keeps the peak at ``budget`` floats whatever the image size.
``sparse_upsample_argmax`` gives the same labels while interpolating only near class boundaries.
"""

from __future__ import annotations

import functools
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from atrous._threads import cores_oversubscribed, other_cpus, run_on

__all__ = ["upsample_argmax", "sparse_upsample_argmax", "BAND_BUDGET"]

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


# rows of labels a band needs before a second thread pays for its hand-off (~0.1 ms): on a
# Xeon (AMX), 2 threads, labels 129 rows high: 0.13 ms in one band, 0.21-0.30 ms in two on
# smooth logits (a wash on noise); 193 rows: a wash on smooth logits, 0.80 -> 0.57 ms on noise
MIN_BAND_ROWS = 80


def sparse_upsample_argmax(
    logits: np.ndarray,
    size: tuple[int, int],
    region: tuple[int, int] | None = None,
    threads: int = 1,
    repeat: int = 1,
    out_shape: tuple[int, int] | None = None,
) -> np.ndarray:
    """Class ids (uint8) of low-resolution ``logits`` (C, h, w) upsampled bilinearly to ``size``
    and arg-maxed, for the top-left ``region`` (rows, cols; default all of ``size``).

    The same labels as ``F.interpolate(..., mode='bilinear', align_corners=False).argmax``, at a
    fraction of the work: an output pixel whose four low-resolution neighbours share their
    argmax takes that class (a convex combination of four score vectors keeps a common
    maximum), so the interpolation runs only near class boundaries, over only the classes
    not below one corner's winner at all four corners (no other can win in the cell), and
    there only at both ends of each run of pixels between the same two input columns when
    those agree (each class's score is linear along the run). With ``repeat`` > 1 every
    label fills a ``repeat`` x ``repeat`` block of the result (labels computed at
    1/``repeat`` and enlarged by an exact integer repeat in the same pass), cropped to
    ``out_shape`` (default the whole ``region`` times ``repeat``). Compiled with numba on
    first use (cached on disk); ``threads`` bands of rows run in parallel.
    """
    compiled = _sparse_kernel()
    rows, cols = region or size
    height, width = out_shape or (rows * repeat, cols * repeat)
    if repeat < 1 or not (0 < height <= rows * repeat and 0 < width <= cols * repeat):
        raise ValueError(f"out_shape {out_shape} does not fit {region or size} x {repeat}")
    rows = -(-height // repeat)  # label rows that reach the output
    scores, low = compiled.winners(np.asarray(logits, dtype=np.float32))
    labels = np.empty((height, width), np.uint8)
    args = (scores, low, int(size[0]), int(size[1]), int(cols), int(repeat), labels)
    bands = max(1, min(int(threads), rows // MIN_BAND_ROWS))
    if bands > 1 and cores_oversubscribed():
        # a band handed to a pool thread waits for a time slice: dm0.5 at 513, random weights,
        # load 22 on 2 cores, interleaved: 1.3 ms in one band, 40 ms in two
        bands = 1
    if bands == 1:
        compiled.kernel(*args, 0, rows)
        return labels
    # Python threads, not numba's parallel layer: its OpenMP pool kills forked children that
    # segment (a pre-forking server after warm-up), and its other layer is not thread-safe
    edges = compiled.band_edges(low, rows, int(size[0]), bands)
    pool = _pool(bands - 1)  # the kernel releases the GIL: the bands really run in parallel
    beside = other_cpus()  # the pool's bands on other cores than this thread's
    futures = [
        pool.submit(run_on, beside, compiled.kernel, *args, edges[i], edges[i + 1])
        for i in range(1, bands)
    ]
    compiled.kernel(*args, edges[0], edges[1])
    for future in futures:
        future.result()
    return labels


@functools.cache
def _pool(workers: int) -> ThreadPoolExecutor:
    """A shared thread pool of ``workers`` threads for the row bands (one per process: a forked
    child gets a new pool, see below)."""
    return ThreadPoolExecutor(workers, thread_name_prefix="atrous-upsample")


# a forked child inherits the pool without its threads: work submitted there would never run
os.register_at_fork(after_in_child=_pool.cache_clear)


def _sparse_kernel() -> Any:
    """The module of ``sparse_upsample_argmax``'s compiled functions (numba: compiled on first
    use, cached on disk between processes; imported lazily, numba takes a while to import)."""
    from atrous import _sparse_kernel

    return _sparse_kernel
