"""dm0.5 at 513, 2 threads, end to end, interleaved: LiteRT int8 with the argmax in its file
against the fast int8 graph, with the host's label tail in two row bands whatever the load
(before) and with its band count chosen from the load (after, ``atrous.upsample``).

Prints per-stage medians (decode, preprocess, infer, postprocess; ms). Run::

    PYTHONPATH=src python benchmarks/zoo_fast_dm05.py --runs 25

The figures in benchmarks/results/zoo_fast.md ("dm0.5 against LiteRT int8") come from it.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import cv2
import numpy as np

import atrous.upsample as upsample
from atrous.bench.latency import cpu_model, synthetic_photo
from atrous.export.parity import diversify, synthetic_image
from atrous.export.tflite import export_tflite
from atrous.fastpath import export_fast_int8
from atrous.models import default_card, get_model
from atrous.segmenter import Segmenter
from atrous.sources import load_engine

NAME = "deeplabv3_mnv2_dm05_os16"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=25)
    parser.add_argument("--size", type=int, default=513)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    cv2.setNumThreads(1)
    size, threads = args.size, args.threads
    tmp = Path(tempfile.mkdtemp(prefix="atrous-dm05-"))
    card = default_card(NAME)
    model = diversify(get_model(NAME).eval(), card)
    photos = [synthetic_image(size, size, seed=i) for i in range(8)]
    lite = export_tflite(
        model,
        card,
        tmp / "q.tflite",
        size=(size, size),
        precision="int8",
        calibration=photos,
        with_argmax=True,
    )
    fast = export_fast_int8(model, card, tmp / "f.xml", photos, num=8)
    lite_seg = Segmenter(*load_engine(lite, "litert", threads))
    fast_seg = Segmenter(*load_engine(fast, "openvino", threads))
    image = tmp / "photo.jpg"
    cv2.imwrite(str(image), synthetic_photo(size, size)[..., ::-1])
    busy = upsample.cores_oversubscribed
    paths = {
        "LiteRT int8 (argmax in file)": (lite_seg, busy),
        "fast int8, tail in 2 bands (before)": (fast_seg, lambda: False),
        "fast int8, bands from the load (after)": (fast_seg, busy),
    }
    times: dict[str, list[dict[str, float]]] = {k: [] for k in paths}
    loads = []
    for i in range(args.runs + 3):
        loads.append(os.getloadavg()[0])
        for label, (seg, policy) in paths.items():
            upsample.cores_oversubscribed = policy
            prediction = seg.predict(image)
            if i >= 3:
                times[label].append(prediction.timings)
    upsample.cores_oversubscribed = busy
    load = f"load {min(loads):.1f}-{max(loads):.1f}"
    print(f"{cpu_model()}, {load}, {size}x{size}, {threads} threads, {args.runs} runs")
    for label, rows in times.items():
        medians = {k: round(float(np.median([r[k] for r in rows])), 2) for k in rows[0]}
        print(label, medians)


if __name__ == "__main__":
    main()
