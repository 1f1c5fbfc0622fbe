"""Decoding an uploaded JPEG: ``fast_decode_image`` (libjpeg-turbo via simplejpeg, what
``atrous serve`` and ``atrous predict`` use) against ``decode_image`` (Pillow), interleaved.

    PYTHONPATH=src python benchmarks/upload_decode.py [--runs 100]

Synthetic photos (``atrous.bench.latency.synthetic_photo``) encoded at quality 90 with 4:2:0
chroma (what cameras and browsers send), from the dm0.5 network's 513 px to a 12 MP phone
photo; the largest pixel difference between the two decoders is given beside the times.
Writes benchmarks/results/upload_decode.md.
"""

from __future__ import annotations

import argparse
import io
import time
from pathlib import Path

import numpy as np
from PIL import Image

from _report import write_report
from atrous.bench.latency import cpu_model, synthetic_photo
from atrous.data.io import decode_image, fast_decode_image

OUT = Path(__file__).parent / "results" / "upload_decode.md"
SIZES = ((513, 513), (1280, 720), (1920, 1080), (4032, 3024))


def jpeg(width: int, height: int) -> bytes:
    """A synthetic photo of ``width`` x ``height`` as JPEG bytes (quality 90, 4:2:0)."""
    buffer = io.BytesIO()
    Image.fromarray(synthetic_photo(height, width)).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100)
    args = parser.parse_args()
    rows = []
    for width, height in SIZES:
        data = jpeg(width, height)
        decoders = {"pillow": decode_image, "fast": fast_decode_image}
        gap = int(np.abs(decoders["pillow"](data).astype(int) - decoders["fast"](data)).max())
        times: dict[str, list[float]] = {k: [] for k in decoders}
        for _ in range(args.runs):
            for name, decode in decoders.items():
                start = time.perf_counter()
                decode(data)
                times[name].append(time.perf_counter() - start)
        pillow, fast = (float(np.median(times[k])) * 1e3 for k in ("pillow", "fast"))
        rows.append(
            f"| {width} x {height} | {len(data) / 1e3:.0f} | {pillow:.2f} | {fast:.2f} | "
            f"{pillow / fast:.2f}x | {gap} |"
        )
        print(rows[-1], flush=True)
    about = (
        f"({cpu_model()}; median of {args.runs} interleaved runs, one thread). `atrous serve` "
        "decodes uploads, and `atrous predict` its files, with the fast decoder; Pillow stays "
        "the route for everything that is not an upright JPEG's bytes (rotated JPEGs go "
        "through OpenCV)."
    )
    columns = ["photo", "JPEG kB", "Pillow ms", "fast ms", "speed-up", "largest pixel difference"]
    text = write_report(OUT, "Decoding uploaded JPEGs", about, columns, "lrrrrr", rows)
    print(text)


if __name__ == "__main__":
    main()
