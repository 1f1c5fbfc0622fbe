"""The numba kernel of ``atrous.upsample.sparse_upsample_argmax`` (imported on first use).

Module-level functions, so that numba's on-disk cache finds them again in the next process
(functions defined inside another function were compiled anew in every process, ~6 s on the
first image).
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["band_edges", "kernel", "winners"]


@njit(cache=True, nogil=True)
def winners(logits):  # logits: (C, h, w) float32
    """Scores as (h, w, C) (each cell's classes adjacent, as the kernel reads them) and each
    cell's argmax (lowest class id on a tie), in one pass: NumPy's transposing copy and
    argmax over 21 classes took 0.07 ms of the 0.7 ms label step at 33 x 33."""
    classes, h, w = logits.shape
    scores = np.empty((h, w, classes), np.float32)
    low = np.empty((h, w), np.int64)
    for y in range(h):
        for x in range(w):
            best, top = 0, logits[0, y, x]
            scores[y, x, 0] = top
            for c in range(1, classes):
                value = logits[c, y, x]
                scores[y, x, c] = value
                if value > top:
                    best, top = c, value
            low[y, x] = best
    return scores, low


@njit(cache=True, nogil=True)
def band_edges(low, rows, out_h, bands):
    """Edges of ``bands`` bands of the ``rows`` label rows that share the kernel's work evenly:
    a label row costs one unit plus half a unit per class boundary among the low-resolution
    cells it interpolates between (objects gather in parts of an image; equal row counts left
    one band twice the other's work)."""
    h, w = low.shape
    pair = np.zeros(h, np.float64)  # boundaries in a low-resolution row and the one below it
    for i in range(h):
        for x in range(w - 1):
            if low[i, x + 1] != low[i, x]:
                pair[i] += 1.0
                if i > 0:
                    pair[i - 1] += 1.0
        if i + 1 < h:
            for x in range(w):
                if low[i + 1, x] != low[i, x]:
                    pair[i] += 1.0
    work = np.empty(rows, np.float64)
    total = 0.0
    for y in range(rows):
        top = min(max(int(np.floor((y + 0.5) * h / out_h - 0.5)), 0), h - 1)
        total += 1.0 + 0.5 * pair[top]
        work[y] = total
    edges = np.empty(bands + 1, np.int64)
    edges[0], edges[bands] = 0, rows
    for k in range(1, bands):
        edges[k] = min(np.searchsorted(work, total * k / bands) + 1, rows)
    return edges


@njit(cache=True, nogil=True, fastmath=True)  # finite scores: no NaN/inf semantics needed
def mixed_argmax(row, lo, hi, wx, cand, n):
    """argmax of row[lo] * (1 - wx) + row[hi] * wx over the cell's ``n`` candidate classes
    ``cand`` (ascending, so the lowest class id wins a tie, as in a full argmax)."""
    best = cand[0]
    top = row[lo, best] * (np.float32(1.0) - wx) + row[hi, best] * wx
    for i in range(1, n):
        c = cand[i]
        score = row[lo, c] * (np.float32(1.0) - wx) + row[hi, c] * wx
        if score > top:
            best, top = c, score
    return best


@njit(cache=True, nogil=True, fastmath=True)
def candidates(scores, t, b, lo, hi, low, cand, below):
    """The classes that can win between the four score vectors of a cell, ascending, in
    ``cand``; their number. A class below one corner's winner at all four corners stays below
    it everywhere in the cell (a convex combination keeps a strict order), so it never wins."""
    below[:] = False
    for j in (low[t, lo], low[t, hi], low[b, lo], low[b, hi]):
        for c in range(below.shape[0]):  # branch-free: vectorised over the classes
            below[c] |= (
                (scores[t, lo, j] > scores[t, lo, c])
                & (scores[t, hi, j] > scores[t, hi, c])
                & (scores[b, lo, j] > scores[b, lo, c])
                & (scores[b, hi, j] > scores[b, hi, c])
            )
    n = 0
    for c in range(below.shape[0]):
        if not below[c]:
            cand[n] = c
            n += 1
    return n


@njit(cache=True, nogil=True, fastmath=True)
def one_crossing(row, lo, hi, weight_x, x, end, first, final, cand, n):
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
    for i in range(n):  # the cell's candidate classes: no other can win there
        c = cand[i]
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
    cached = np.empty((h, w, classes), np.int64)  # each cell's candidate classes, found once
    counts = np.full((h, w), -1, np.int64)
    below = np.empty(classes, np.bool_)
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
            cand, n = cached[t, lo], counts[t, lo]
            if n < 0:  # a cell spans several label rows: its candidates are found once
                n = counts[t, lo] = candidates(scores, t, b, lo, hi, low, cand, below)
            first = mixed_argmax(row, lo, hi, weight_x[x], cand, n)
            final = mixed_argmax(row, lo, hi, weight_x[end], cand, n)
            if first == final:  # scores are linear along the run: the same class between
                fill(labels, y, x, end, rep, first)
            else:
                split = one_crossing(row, lo, hi, weight_x, x, end, first, final, cand, n)
                if split > x:  # first up to the crossing of its line with final's, final after
                    fill(labels, y, x, split - 1, rep, first)
                    fill(labels, y, split, end, rep, final)
                else:  # a third class wins inside the run: pixel by pixel
                    fill(labels, y, x, x, rep, first)
                    for xx in range(x + 1, end):
                        best = mixed_argmax(row, lo, hi, weight_x[xx], cand, n)
                        fill(labels, y, xx, xx, rep, best)
                    fill(labels, y, end, end, rep, final)
            x = end + 1
        for yy in range(y * rep + 1, min((y + 1) * rep, labels.shape[0])):
            labels[yy] = labels[y * rep]  # the repeat: copies of the first output row
