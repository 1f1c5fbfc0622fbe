"""The roofline figure: each measured layer as a point (arithmetic intensity, achieved
multiply-add rate) under the machine's roof, min(peak, intensity x bandwidth)."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["roofline_figure"]

_KIND_COLOURS = {
    "depthwise conv": "#ee7733",
    "conv 1x1": "#4477aa",
    "conv 3x3": "#228833",
    "transposed conv": "#aa3377",
}


def roofline_figure(result: Any):
    """Matplotlib figure of a :class:`atrous.bench.roofline.Roofline`; layers without
    multiply-adds (resizes, pooling) or without a measured time cannot be placed and are
    counted in the title."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    peaks, precision = result.peaks, result.precision
    placed = [layer for layer in result.layers if layer.macs and layer.ms]
    fig, ax = plt.subplots(figsize=(8, 5.5))
    lo = min([layer.intensity for layer in placed] + [0.1]) / 2
    hi = max([layer.intensity for layer in placed] + [peaks.balance(precision) * 4]) * 2
    x = np.geomspace(lo, hi, 200)
    roof = np.minimum(peaks.gmacs(precision), x * peaks.bandwidth_gbs)
    ax.plot(x, roof, color="black", lw=2, label="roof: min(peak, intensity x bandwidth)")
    ax.axvline(peaks.balance(precision), color="grey", ls=":", lw=1,
               label=f"balance {peaks.balance(precision):.2f} MAC/B")  # fmt: skip
    for kind in sorted({layer.kind for layer in placed}):
        pts = [layer for layer in placed if layer.kind == kind]
        ax.scatter(
            [p.intensity for p in pts],
            [p.macs / (p.ms * 1e-3) / 1e9 for p in pts],
            s=[12 + 200 * p.ms / max(q.ms for q in placed) for p in pts],
            color=_KIND_COLOURS.get(kind, "#bbbbbb"),
            alpha=0.7,
            label=f"{kind} ({len(pts)})",
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (multiply-adds per byte)")
    ax.set_ylabel("achieved GMAC/s (point size: layer time)")
    skipped = len(result.layers) - len(placed)
    ax.set_title(
        f"{result.size[0]}x{result.size[1]} {precision} on {peaks.cpu}, {peaks.threads} threads"
        f"\n{len(placed)} layers placed, {skipped} without multiply-adds or time not shown",
        fontsize=10,
    )
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(True, which="both", alpha=0.2)
    fig.tight_layout()
    return fig
