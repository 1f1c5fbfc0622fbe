"""The host label step inside predict (right after the OpenVINO int8 network, 2 threads) against
an earlier revision's ``atrous.upsample``, interleaved, in several fresh processes.

    PYTHONPATH=src python benchmarks/label_handoff.py --against b3b56d8

Where a thread lands is decided per process (Linux keeps a woken thread where it first put it),
so each model runs in ``--processes`` processes; a process times ``--runs`` predict-like
rounds (decode, preprocess, network, then the label step of one revision and the other in turn)
and reports the label step's median for both. Models: random (diversified) weights, built once
into a temporary directory with ``export_fast_int8``. Writes benchmarks/results/label_handoff.md.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from _report import write_report
from atrous.bench.latency import cpu_model, synthetic_photo, with_input_size
from atrous.data.io import fast_read_image
from atrous.export.parity import diversify, synthetic_image
from atrous.fastpath import export_fast_int8, fast_engine
from atrous.models import default_card, get_model
from atrous.segmenter import Segmenter
from atrous.sources import load_engine

ROOT = Path(__file__).resolve().parent.parent
OUT = Path(__file__).parent / "results" / "label_handoff.md"
MODELS = (
    ("deeplabv3_mnv2_dm05_os16", 513),
    ("lraspp_mobilenet_v3_large_tv", 520),
    ("deeplabv3_mnv2_a050_noaspp_257", 257),
)


def earlier_upsample(rev: str):
    """``rev``'s ``atrous/upsample.py`` as a module of its own (its compiled kernel is this
    revision's, loaded through ``atrous``)."""
    source = subprocess.run(
        ["git", "show", f"{rev}:src/atrous/upsample.py"],
        cwd=ROOT, check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    path = Path(tempfile.mkdtemp(prefix="atrous-upsample-")) / "earlier_upsample.py"
    path.write_text(source, encoding="utf-8")
    spec = importlib.util.spec_from_file_location("earlier_upsample", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def build(name: str, size: int, folder: Path) -> tuple[Path, Path]:
    """The int8 fast graph of ``name`` with diversified weights, and a JPEG at ``size``."""
    card = default_card(name)
    model = diversify(get_model(name).eval(), card)
    photos = [synthetic_image(size, size, seed=i) for i in range(8)]
    graph = export_fast_int8(model, card, folder / f"{name}_{size}_fast.xml", photos, num=8)
    image = folder / f"{name}_{size}.jpg"
    cv2.imwrite(str(image), synthetic_photo(size, size)[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])
    return graph, image


def one_process(graph: Path, image: Path, size: int, rev: str, runs: int) -> dict[str, float]:
    """Label-step medians (ms) of the earlier and the current revision in this process."""
    from atrous import preprocess, upsample

    cv2.setNumThreads(1)
    seg = with_input_size(Segmenter(*load_engine(graph, fast_engine(graph), 2)), size)
    revisions = {"earlier": earlier_upsample(rev), "current": upsample}
    times: dict[str, list[float]] = {k: [] for k in revisions}
    labels = {}
    for i in range(runs):
        for key, module in revisions.items():
            preprocess.sparse_upsample_argmax = module.sparse_upsample_argmax
            batch, metas = seg.preprocess([fast_read_image(image)])
            output = seg.engine.run(batch)
            start = time.perf_counter()
            labels[key] = preprocess.postprocess(seg.card, output[0], metas[0], threads=2)[0]
            times[key].append(time.perf_counter() - start)
        if i == 0 and not np.array_equal(labels["earlier"], labels["current"]):
            raise SystemExit("the two revisions' labels differ")
    preprocess.sparse_upsample_argmax = upsample.sparse_upsample_argmax
    return {k: float(np.median(v[runs // 10 :])) * 1e3 for k, v in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", default="b3b56d8", help="git revision of the earlier step")
    parser.add_argument("--processes", type=int, default=5)
    parser.add_argument("--runs", type=int, default=400)
    parser.add_argument(
        "--child", nargs=3, metavar=("GRAPH", "IMAGE", "SIZE"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.child:
        graph, image, size = args.child
        result = one_process(Path(graph), Path(image), int(size), args.against, args.runs)
        print(json.dumps(result))
        return
    rows = []
    with tempfile.TemporaryDirectory(prefix="atrous-handoff-") as tmp:
        for name, size in MODELS:
            graph, image = build(name, size, Path(tmp))
            medians = []
            for _ in range(args.processes):
                child = ["--child", str(graph), str(image), str(size)]
                command = [sys.executable, __file__, "--against", args.against, "--runs",
                           str(args.runs), *child]  # fmt: skip
                proc = subprocess.run(command, check=True, capture_output=True, text=True)
                medians.append(json.loads(proc.stdout.strip().splitlines()[-1]))
            earlier = [m["earlier"] for m in medians]
            current = [m["current"] for m in medians]
            rows.append(
                f"| {name} | {size} | {' / '.join(f'{v:.2f}' for v in earlier)} | "
                f"{' / '.join(f'{v:.2f}' for v in current)} | "
                f"{np.median(earlier) / np.median(current):.2f}x |"
            )
            print(rows[-1], flush=True)
    about = (
        f"({cpu_model()}; random weights, 2 threads). Each cell lists one median per fresh "
        f"process ({args.runs} interleaved rounds each): the label step's time right after the "
        "OpenVINO int8 network, as in `predict`. The current step computes the cells' winners "
        "and the bands' edges in numba and keeps its helper thread off the calling thread's "
        "CPU; the earlier one left the helper wherever Linux woke it, which in some processes "
        "was the calling thread's own core for the whole process."
    )
    columns = ["model", "input", f"{args.against} ms, per process", "current ms, per process",
               "speed-up of the medians"]  # fmt: skip
    title = "The label step inside predict, against an earlier revision"
    text = write_report(OUT, title, about, columns, "lrllr", rows)
    print(text)


if __name__ == "__main__":
    main()
