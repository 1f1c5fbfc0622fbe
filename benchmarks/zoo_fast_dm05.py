"""dm0.5 at 513, 2 threads, end to end, interleaved in one run: the eager PyTorch network (the
reference), LiteRT int8 with the argmax inside its file (atrous's own TFLite writer, what the
NXP/ST recipes run), and the default fast int8 path (OpenVINO graph + host label step).

Two sets of weights: diversified random weights with all 21 classes (a class boundary in 98% of
the logit cells: the worst case for the host's label step, whose cost grows with boundaries),
and, with ``--checkpoint``, a model trained by ``atrous train demo`` on its own synthetic scenes
(a real label map). The network's time does not depend on the weights. Run::

    PYTHONPATH=src python benchmarks/zoo_fast_dm05.py --checkpoint runs/demo/best.pt

Prints per-stage medians (decode, preprocess, infer, postprocess; ms) and writes
benchmarks/results/zoo_fast_dm05.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from atrous.bench.latency import BenchTarget, benchmark, cpu_model, synthetic_photo
from atrous.checkpoint import load_checkpoint
from atrous.data.synthetic import make_scene
from atrous.export.parity import diversify, synthetic_image
from atrous.export.tflite import export_tflite
from atrous.fastpath import export_fast_int8
from atrous.models import default_card, get_model
from atrous.runtimes import TorchEngine
from atrous.segmenter import Segmenter
from atrous.sources import load_engine

NAME = "deeplabv3_mnv2_dm05_os16"
OUT = Path(__file__).parent / "results" / "zoo_fast_dm05.md"
EAGER, LITE, FAST = "eager PyTorch network", "LiteRT int8 (argmax in file)", "fast int8 (default)"


def targets(model: torch.nn.Module, card: Any, photos: list, tmp: Path, size: int):
    """The three paths of one set of weights: eager network, LiteRT int8, fast int8."""
    lite = export_tflite(
        model, card, tmp / "q.tflite", size=(size, size), precision="int8",
        calibration=photos, with_argmax=True,
    )  # fmt: skip
    fast = export_fast_int8(model, card, tmp / "f.xml", photos, num=len(photos))
    return [
        BenchTarget(EAGER, lambda t: Segmenter(TorchEngine(model.eval(), t), card)),
        BenchTarget(LITE, lambda t: Segmenter(*load_engine(lite, "litert", t)), lite),
        BenchTarget(FAST, lambda t: Segmenter(*load_engine(fast, "openvino", t)), fast),
    ]


def weights(checkpoint: Path | None, size: int) -> tuple[str, torch.nn.Module, Any, list, Path]:
    """(label, model, card, calibration images, test JPEG) for random or trained weights."""
    tmp = Path(tempfile.mkdtemp(prefix="atrous-dm05-"))
    image = tmp / "photo.jpg"
    if checkpoint is None:
        card = default_card(NAME)
        model = diversify(get_model(NAME).eval(), card)
        photos = [synthetic_image(size, size, seed=i) for i in range(8)]
        cv2.imwrite(str(image), synthetic_photo(size, size)[..., ::-1])
        return "random weights, 21 classes", model, card, photos, image
    model, card = load_checkpoint(checkpoint)
    pre = card.preprocessing.model_copy(update={"size": size})  # trained at 192 px scenes
    card = card.model_copy(update={"preprocessing": pre})
    rng = np.random.default_rng(0)
    scenes = [make_scene(rng, size)[0] for _ in range(9)]
    cv2.imwrite(str(image), scenes[-1][..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
    label = f"trained ({checkpoint.name}, {len(card.classes)} classes, a {size} px demo scene)"
    return label, model, card, scenes[:8], image


def measure(
    paths: list[BenchTarget], image: Path, size: int, threads: int, runs: int, block: int
) -> dict[str, dict[str, float]]:
    """Medians over ``runs`` rounds of ``block`` back-to-back runs per path (the first of each
    block untimed, see ``atrous.bench.latency.benchmark``) on ``image``: the eager network
    alone (``network_ms``), the others' stages end to end."""
    result = benchmark(
        paths, sizes=[size], threads=[threads], runs=runs, warmup=1, block=block, image=image
    )
    medians = {EAGER: {"network_ms": result.find(EAGER, "network").median_ms}}
    for label in (LITE, FAST):
        medians[label] = result.find(label, "end_to_end").stages_ms
    return medians


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=8, help="rounds (after one warm-up)")
    parser.add_argument("--block", type=int, default=4, help="runs per path per round")
    parser.add_argument("--size", type=int, default=513)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--checkpoint", type=Path, help="a trained dm0.5 checkpoint (demo)")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    cv2.setNumThreads(1)
    torch.set_num_threads(args.threads)
    rows, loads = [], [os.getloadavg()[0]]
    for checkpoint in [None] + ([args.checkpoint] if args.checkpoint else []):
        label, model, card, photos, image = weights(checkpoint, args.size)
        paths = targets(model, card, photos, image.parent, args.size)
        medians = measure(paths, image, args.size, args.threads, args.runs, args.block)
        loads.append(os.getloadavg()[0])
        eager = medians[EAGER]["network_ms"]
        for path in (LITE, FAST):
            m = medians[path]
            print(label, path, {k: round(v, 2) for k, v in m.items()}, flush=True)
            rows.append((label, path, m, eager))
    command = "PYTHONPATH=src python benchmarks/zoo_fast_dm05.py " + " ".join(sys.argv[1:])
    args.out.write_text(report(rows, command, args, loads))
    print(args.out.read_text())


def report(rows: list, command: str, args: argparse.Namespace, loads: list[float]) -> str:
    """The results file: per path, the stages, end to end, and the two ratios."""
    lines = [
        "| weights | path | decode | preprocess | network | label step | end to end | "
        "eager network / this | LiteRT e2e / this |",
        "|" + "---|" * 9,
    ]
    lite = {label: m["total_ms"] for label, path, m, _ in rows if path == LITE}
    for label, path, m, eager in rows:
        cells = [m["decode_ms"], m["preprocess_ms"], m["infer_ms"], m["postprocess_ms"]]
        lines.append(
            f"| {label} | {path} | " + " | ".join(f"{c:.2f}" for c in cells)
            + f" | {m['total_ms']:.2f} | {eager / m['total_ms']:.2f}x"
            + f" | {lite[label] / m['total_ms']:.2f}x |"
        )  # fmt: skip
    eager_rows = sorted({(label, eager) for label, _, _, eager in rows})
    return "\n".join(
        [
            "# dm0.5 at 513: the default fast path against eager PyTorch and LiteRT int8",
            "",
            f"Generated {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} by `{command}` "
            f"({args.runs} rounds after one warm-up round; in each, every path runs "
            f"{args.block} times back to back, the first untimed; "
            f"{args.threads} threads, {args.size}x{args.size} JPEG in, mask at the original size "
            f"out; {cpu_model()}, torch {torch.__version__}; load average "
            f"{min(loads):.1f}-{max(loads):.1f} on {os.cpu_count()} cores).",
            "",
            *lines,
            "",
            "Eager network (the reference, network only, same run): "
            + "; ".join(f"{label}: {eager:.2f} ms" for label, eager in eager_rows),
            "",
            "The label step (upsample + argmax on the host, labels at 1/2) costs what the class "
            "boundaries cost: random weights put one in nearly every logit cell; a trained "
            "model's map has boundaries only around objects. LiteRT's argmax is inside its "
            "file; its preprocessing is the float normalisation its input asks for.",
            "",
        ]
    )


if __name__ == "__main__":
    main()
