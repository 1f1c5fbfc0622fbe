"""The numba kernel of ``atrous.upsample.sparse_upsample_argmax`` (imported on first use).

Module-level functions, so that numba's on-disk cache finds them again in the next process
(functions defined inside another function were compiled anew in every process, ~6 s on the
first image).
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["kernel"]


@njit(cache=True, nogil=True, fastmath=True)  # finite scores: no NaN/inf semantics needed
def mixed_argmax(row, lo, hi, wx, mixed):
    """argmax over classes of row[lo] * (1 - wx) + row[hi] * wx."""
    for c in range(mixed.shape[0]):  # a separate loop: vectorised
        mixed[c] = row[lo, c] * (np.float32(1.0) - wx) + row[hi, c] * wx
    best, top = 0, mixed[0]
    for c in range(1, mixed.shape[0]):
        if mixed[c] > top:
            best, top = c, mixed[c]
    return best


@njit(cache=True, nogil=True, fastmath=True)
def one_crossing(row, lo, hi, weight_x, x, end, first, final, mixed):
    """The first column of the run x..end that ``final`` wins, when ``first`` (which wins at x)
    and ``final`` (at end) are the only winners; 0 when a third class wins somewhere.

    Along a run every class score is linear in the weight, so the winning score is convex and
    each class wins on one interval: if no class beats ``first`` and ``final`` where their
    lines cross, ``first`` wins up to the crossing and ``final`` after it. One evaluation of
    all classes instead of one per column (the per-column argmax was most of the kernel's time
    on boundary-dense logits)."""
    gap_lo = row[lo, first] - row[lo, final]  # first's lead at weight 0 and at weight 1
    gap_hi = row[hi, first] - row[hi, final]
    if gap_lo - gap_hi <= 0:
        return 0
    cross = gap_lo / (gap_lo - gap_hi)
    level = row[lo, first] * (np.float32(1.0) - cross) + row[hi, first] * cross
    for c in range(mixed.shape[0]):
        score = row[lo, c] * (np.float32(1.0) - cross) + row[hi, c] * cross
        if score > level + np.float32(1e-6) and c != first and c != final:
            return 0
    split = x + 1
    while split < end and weight_x[split] < cross:
        split += 1
    return split


@njit(cache=True, nogil=True, fastmath=True)
def fill(labels, y, x0, x1, rep, value):
    """Labels x0..x1 (inclusive) of label row ``y`` -> output row y * rep, clipped."""
    labels[y * rep, x0 * rep : min((x1 + 1) * rep, labels.shape[1])] = value


@njit(cache=True, nogil=True, fastmath=True)
def kernel(scores, low, out_h, out_w, cols, rep, labels, y0, y1):  # scores: (h, w, C)
    h, w, classes = scores.shape
    left = np.empty(cols, np.int64)
    right = np.empty(cols, np.int64)
    weight_x = np.empty(cols, np.float32)
    for x in range(cols):  # half-pixel sampling, clamped at the borders
        fx = max((x + 0.5) * w / out_w - 0.5, 0.0)
        left[x] = min(int(fx), w - 1)
        right[x] = min(left[x] + 1, w - 1)
        weight_x[x] = fx - left[x]
    last = np.empty(cols, np.int64)  # last output column between the same two inputs
    for x in range(cols - 1, -1, -1):
        last[x] = x if x == cols - 1 or left[x + 1] != left[x] else last[x + 1]
    row = np.empty((w, classes), np.float32)  # scores interpolated between two rows
    filled = np.zeros(w, np.bool_)
    mixed = np.empty(classes, np.float32)
    for y in range(y0, y1):
        fy = max((y + 0.5) * h / out_h - 0.5, 0.0)
        t = min(int(fy), h - 1)
        b = min(t + 1, h - 1)
        wy = np.float32(fy - t)
        filled[:] = False
        x = 0
        while x < cols:  # one run of output columns between the same two input columns
            end, lo, hi = last[x], left[x], right[x]
            k = low[t, lo]
            if low[t, hi] == k and low[b, lo] == k and low[b, hi] == k:
                fill(labels, y, x, end, rep, k)  # all four neighbours agree: k throughout
                x = end + 1
                continue
            for j in (lo, hi):
                if not filled[j]:
                    for c in range(classes):
                        a = scores[t, j, c]
                        row[j, c] = a + (scores[b, j, c] - a) * wy
                    filled[j] = True
            first = mixed_argmax(row, lo, hi, weight_x[x], mixed)
            final = mixed_argmax(row, lo, hi, weight_x[end], mixed)
            if first == final:  # scores are linear along the run: the same class between
                fill(labels, y, x, end, rep, first)
            else:
                split = one_crossing(row, lo, hi, weight_x, x, end, first, final, mixed)
                if split > x:  # first up to the crossing of its line with final's, final after
                    fill(labels, y, x, split - 1, rep, first)
                    fill(labels, y, split, end, rep, final)
                else:  # a third class wins inside the run: pixel by pixel
                    fill(labels, y, x, x, rep, first)
                    for xx in range(x + 1, end):
                        best = mixed_argmax(row, lo, hi, weight_x[xx], mixed)
                        fill(labels, y, xx, xx, rep, best)
                    fill(labels, y, end, end, rep, final)
            x = end + 1
        for yy in range(y * rep + 1, min((y + 1) * rep, labels.shape[0])):
            labels[yy] = labels[y * rep]  # the repeat: copies of the first output row
