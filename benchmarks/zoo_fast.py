"""The whole zoo on the fast path: every zoo model against its eager network, plain ONNX Runtime
fp32 and LiteRT int8, interleaved in one run.

Regenerate ``benchmarks/results/zoo_fast.md`` (a reduced run of a few minutes)::

    PYTHONPATH=src python benchmarks/zoo_fast.py --quick

Without options it measures every zoo model at its published input size (the longest side) and
at 513 where that differs; ``--models a,b`` names the models; ``--quick`` runs four small models
at their published size only. Per model and size, five paths run
interleaved (A, B, C, D, E, A, ...) at 1 and 2 threads, so ratios hold on a noisy machine:

- eager: the PyTorch network (the reference the ratios divide);
- ORT fp32: the plain ONNX export (float input, logits out) on ONNX Runtime;
- LiteRT int8: atrous's own TFLite writer (``atrous.export.tflite``), full integer, calibrated on
  the same images, the argmax inside the file (what the NXP/ST recipes run);
- fast fp32: the fast graph on ONNX Runtime; fast int8: the OpenVINO int8 fast graph (default).

All from one set of diversified random weights (``atrous.export.parity.diversify``). Peak RSS is
that of a fresh process that opens the path's file and runs it three times at 2 threads.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import torch

from atrous.bench.latency import BenchTarget, benchmark, cpu_model, synthetic_photo
from atrous.bench.records import BenchResult
from atrous.errors import AtrousError
from atrous.export.onnx import export_onnx
from atrous.export.parity import diversify, synthetic_image
from atrous.export.tflite import export_tflite
from atrous.fastpath import export_fast_int8, export_fast_onnx, fast_engine
from atrous.models import default_card, get_entry, get_model, list_models
from atrous.runtimes import TorchEngine
from atrous.segmenter import Segmenter
from atrous.sources import load_engine

OUT = Path(__file__).parent / "results" / "zoo_fast.md"
QUICK = (
    "deeplabv3_mnv2_dm05_os16",
    "deeplabv3_mnv2_a050_noaspp_257",
    "lraspp_mobilenet_v3_large_tv",
    "deeplabv3_shufflenetv2_x1_os16",
)
EAGER, ORT, LITERT, FAST32, FAST8 = (
    "eager (PyTorch)",
    "ORT fp32 (plain export)",
    "LiteRT int8 (argmax in file)",
    "fast fp32 (ORT)",
    "fast int8 (OpenVINO)",
)
CALIBRATION = 8
NOTES = """## Notes

- Every zoo entry exports to both fast graphs with no per-model case
  (`tests/fastpath/test_zoo_fast.py`: two cheap entries in the default suite, the whole zoo
  with `-m slow`: fp32 masks against eager on diversified weights, int8 builds and runs).
- Under heavy load (the 1-minute load average of this machine's shared run is in the header)
  the eager network at 2 threads suffers most: every per-operator barrier of its OpenMP pool
  waits for both threads to be scheduled, so its milliseconds, and every "eager / e2e" ratio,
  are inflated against a quiet machine's (the 6x and 8x targets are defined on a quiet one;
  compare 1-thread rows too). The fused graphs (a few dozen kernels) wait far less often.
- The LiteRT int8 file takes float NHWC input: its preprocessing (normalise to float, then the
  interpreter quantizes) is a large share of its end-to-end time at 513; its argmax runs inside
  the file at full resolution, so its postprocessing is a crop.
- Peak RSS: a fresh spawned process (imports included: torch is imported by every path through
  atrous) that opens the file and predicts three times at 2 threads; VmHWM.
- ShuffleNetV2's channel shuffles and the slices after them run as one-hot 1x1 int8
  convolutions (or inside the next convolution, its weights widened with zeros) and its
  concats in uint8 (`atrous.quantize.openvino_graph`): in float, with a layout reorder around
  each, they were half of the int8 network's time; as OpenVINO ShuffleChannels 3.2 of 8.2 ms
  at 513 (one-hot convolutions: 6.0 ms; widened convolutions where a slice feeds one: 4.8 ms,
  profiled; the ShuffleNet rows above are with the final graph).
- Accuracy (float vs the fast int8 graph `atrous train` writes, one trained model per backbone):
  `benchmarks/results/zoo_accuracy.md`.
- The heavy models (ResNet, Xception) ran at 2 threads only, with fewer rounds, in later runs
  of this script (`--keep`, commands in the header). Xception-71 was first killed by the OOM
  killer at 24 GB while its paths were built: the ONNX export traced it at its card's 2049 px
  with autograd on, keeping every activation; traced without autograd the export peaks at
  3.0 GB. Its eager network is noisy at 2 rounds (median network 1436 ms above the same
  path's end to end, 880 ms): against the lower figure the fast path is still 11.9x.
- Under 6x at 2 threads: MobileNetV2-0.5 at 257 (the network alone is ~8.0x eager; decode,
  canvas and the label step, ~0.7 ms, are a third of 2.3 ms) and, in this run, LR-ASPP
  MobileNetV3 (5.71x at 520, 5.43x at 513). LR-ASPP's fast path is faster than in the run
  before (10.14 vs 11.33 ms at 520: network 8.95 vs 9.65 ms, the host's share 1.19 vs 1.68 ms
  with the label step's fixes below) but its eager network ran at 57.9 ms here against 66.0
  ms then: between runs the 2-thread eager LR-ASPP moves by 15-20%, and the ratio with it
  (5.4-7.0x over four runs). dm0.5 at 513 is 6.53x here (6.12x in the run before: its host
  share fell from 1.67 to 1.49 ms). At 1 thread (the light models' rows above) the same three
  are the lowest.
- MobileNetV3's squeeze-and-excitation gates (and LR-ASPP's head gate) multiply in float
  (`atrous.quantize.openvino_graph.float_channel_gates`): NNCF quantized the gate's C values
  too, and the CPU plugin then ran each feature-map multiply through a slower kernel
  (LR-ASPP at 520: 0.88 -> 0.47 ms of multiplies, the network 8.21 -> 7.85 ms interleaved in
  one process). The rows above are with float gates; LR-ASPP's fast path took 11.5 ms at 520
  in the run before them, 9.7-11.3 ms in three runs with them (more spread than the gates'
  share: the machine's speed moves between runs; compare ratios within one run). Its
  three dilated 5x5 depthwise layers (672-960 channels at 33 x 33) take 1.25 ms at the same
  ~55 GMAC/s as its 3x3 depthwise layers: costly for their size, not for a slow kernel. The
  label step on random weights' 65 x 65 logits took ~0.7-0.9 ms, 0.5-0.6 ms with the
  fixes below.
- The label step skips, in each cell of four logit vectors, the classes below one corner's
  winner at all four corners (`benchmarks/results/label_step.md`); it finds the cells'
  winners and the row bands' edges in numba, and keeps its helper thread off the calling
  thread's core (`benchmarks/results/label_handoff.md`: in about one process in three Linux
  had put the helper on the caller's own core for the whole process). The rows above are
  with all three.
"""


def model_sizes(name: str, quick: bool) -> list[int]:
    """The published input size (longest side) and 513 where that differs (quick: the
    published one only)."""
    published = max(get_entry(name).input_size)
    return [published] if quick else sorted({published, 513})


def _segmenter(kind: str, path: Path, name: str, threads: int) -> Segmenter:
    """Open ``path`` as the path ``kind`` runs it (eager: a state dict of ``name``)."""
    cv2.setNumThreads(1)
    if kind == EAGER:
        model = get_model(name).eval()
        model.load_state_dict(torch.load(path, weights_only=True))
        card = default_card(name)
        return Segmenter(TorchEngine(model, threads), card)
    engine = {ORT: "onnxruntime", LITERT: "litert", FAST32: "onnxruntime"}.get(kind)
    engine = engine or fast_engine(path)
    return Segmenter(*load_engine(path, engine, threads))


def _peak_child(kind: str, path: Path, name: str, size: int, image: Path, queue: Any) -> None:
    from atrous.bench.latency import with_input_size

    seg = with_input_size(_segmenter(kind, path, name, 2), size)
    for _ in range(3):
        seg.predict(image)
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over exec from the forked parent
    status = Path("/proc/self/status").read_text().splitlines()
    queue.put(next(int(line.split()[1]) for line in status if line.startswith("VmHWM")) / 1024)


def peak_rss_mb(kind: str, path: Path, name: str, size: int, image: Path) -> float:
    """Peak RSS (MB) of a fresh process that opens the path and predicts three times."""
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    child = ctx.Process(target=_peak_child, args=(kind, path, name, size, image, queue))
    child.start()
    child.join(600)
    return float(queue.get(timeout=5)) if child.exitcode == 0 else float("nan")


def build_files(name: str, size: int, tmp: Path) -> tuple[dict[str, Path], dict[str, str]]:
    """Every path's file for ``name`` at ``size`` (one set of diversified weights); the paths
    that failed to build, with their one-line reason."""
    card = default_card(name)
    model = diversify(get_model(name).eval(), card)
    photos = [synthetic_image(size, size, seed=i) for i in range(CALIBRATION)]
    state = tmp / f"{name}.pt"
    torch.save(model.state_dict(), state)
    builders: dict[str, Callable[[], Path]] = {
        EAGER: lambda: state,
        ORT: lambda: export_onnx(model, card, tmp / f"{name}_{size}.onnx"),
        LITERT: lambda: export_tflite(
            model,
            card,
            tmp / f"{name}_{size}_int8.tflite",
            size=(size, size),
            precision="int8",
            calibration=photos,
            with_argmax=True,
        ),
        FAST32: lambda: export_fast_onnx(model, card, tmp / f"{name}_{size}_fast.onnx"),
        FAST8: lambda: export_fast_int8(
            model, card, tmp / f"{name}_{size}_fast.xml", photos, num=CALIBRATION
        ),
    }
    files, failed = {}, {}
    for kind, build in builders.items():
        try:
            files[kind] = build()
        except (AtrousError, RuntimeError, ValueError) as exc:
            failed[kind] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}"
    return files, failed


def measure(
    name: str, size: int, threads: list[int], runs: int, tmp: Path, block: int = 1
) -> tuple[BenchResult, dict[str, float], dict[str, str]]:
    """The interleaved latency of every path of ``name`` at ``size``, and each one's peak RSS."""
    files, failed = build_files(name, size, tmp)
    targets = [
        BenchTarget(kind, lambda t, k=kind, p=path: _segmenter(k, p, name, t), path)
        for kind, path in files.items()
    ]
    result = benchmark(targets, sizes=[size], threads=threads, runs=runs, warmup=1, block=block)
    image = tmp / "rss.jpg"
    cv2.imwrite(str(image), synthetic_photo(size, size)[..., ::-1])
    rss = {kind: peak_rss_mb(kind, path, name, size, image) for kind, path in files.items()}
    return result, rss, failed


def rows_of(name: str, size: int, result: BenchResult, rss: dict[str, float]) -> list[list[Any]]:
    """One row per path and thread count: network and end-to-end medians, ratios to eager."""
    rows = []
    for r in result.records:
        if r.mode != "end_to_end":
            continue
        net = result.find(r.label, "network", size, r.threads)
        eager = result.find(EAGER, "network", size, r.threads).median_ms
        rows.append(
            [name, size, r.label, r.threads, net.median_ms, r.median_ms, eager / r.median_ms]
            + [rss.get(r.label, float("nan"))]
        )
    return rows


def md_table(columns: list[str], rows: list[list[Any]]) -> str:
    def cell(v: Any) -> str:
        return f"{v:.2f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    return "\n".join(lines + ["| " + " | ".join(cell(v) for v in r) + " |" for r in rows])


def verdict_rows(all_rows: list[list[Any]]) -> list[list[Any]]:
    """Per model and size at 2 threads: fast int8 e2e vs eager network, and vs LiteRT int8."""
    out = []
    keyed = {(r[0], r[1], r[2], r[3]): r for r in all_rows}
    for (name, size, label, threads), row in keyed.items():
        if label != FAST8 or threads != 2:
            continue
        lite = keyed.get((name, size, LITERT, 2))
        vs_lite = lite[5] / row[5] if lite else "-"
        out.append([name, size, row[5], row[6], vs_lite, "yes" if row[6] >= 6 else "NO"])
    return out


def report(
    args: argparse.Namespace,
    started: str,
    load_start: float,
    rows: list[list[Any]],
    failures: list[list[Any]],
    stolen: list[float],
    kept: dict[str, Any] | None = None,
) -> str:
    """The results file's markdown for the rows measured so far (``kept``: every run's rows,
    whose commands are listed)."""
    command = "PYTHONPATH=src python benchmarks/zoo_fast.py " + " ".join(sys.argv[1:])
    commands = sorted({entry["command"] for entry in (kept or {}).values()} - {command})
    if commands:
        command += "` (this run), and earlier with `" + "`, `".join(commands)
    parts = [
        "# The whole zoo on the fast path",
        "",
        f"Generated {started} by `{command}` ({args.runs} rounds after one warm-up round, the "
        f"five paths of each model and size interleaved, each running {args.block} times back "
        "to back per round with the first untimed, so that no path is timed against the "
        "previous runtime's still-spinning threads; "
        f"{cpu_model()}, torch {torch.__version__}). "
        f"Load average at start / end: {load_start:.1f} / {os.getloadavg()[0]:.1f} on "
        f"{os.cpu_count()} cores; CPU time stolen by the hypervisor: up to "
        f"{max(stolen, default=0.0):.1f}%.",
        "",
        "## Fast int8 against the eager network and LiteRT int8 (2 threads, end to end)",
        "",
        md_table(
            ["model", "size", "fast int8 e2e ms", "eager net / fast int8 e2e"]
            + ["LiteRT int8 e2e / fast int8 e2e", ">= 6x"],
            verdict_rows(rows),
        ),
        "",
        "## Every path (median ms; end to end = JPEG file in, mask at the original size out)",
        "",
        md_table(
            ["model", "size", "path", "threads", "network ms", "end-to-end ms"]
            + ["eager network / this e2e", "peak RSS MB"],
            rows,
        ),
        "",
    ]
    if failures:
        why = md_table(["model", "size", "path", "why"], failures)
        parts += ["## Paths that did not build", "", why, ""]
    parts.append(NOTES)
    return "\n".join(parts) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", help="comma-separated zoo names (default: the whole zoo)")
    parser.add_argument("--quick", action="store_true", help="the published input size only")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--runs", type=int, default=10, help="rounds (after one warm-up)")
    parser.add_argument(
        "--block",
        type=int,
        default=3,
        help="runs of a path back to back per round, the first "
        "untimed (the previous runtime's threads still spin)",
    )
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--size", type=int, help="one input size for every model named")
    parser.add_argument(
        "--keep", action="store_true", help="keep the rows of other models from earlier runs"
    )
    args = parser.parse_args(argv)
    names = args.models.split(",") if args.models else list(QUICK if args.quick else list_models())
    threads = [int(t) for t in args.threads.split(",")]
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    load_start = os.getloadavg()[0]
    torch.manual_seed(0)
    store = args.out.with_suffix(".json")  # every run's rows, for --keep
    kept = json.loads(store.read_text()) if args.keep and store.is_file() else {}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="atrous-zoo-") as tmp:
        for name in names:
            for size in [args.size] if args.size else model_sizes(name, args.quick):
                print(f"[{time.strftime('%H:%M:%S')}] {name} at {size}", flush=True)
                result, rss, failed = measure(name, size, threads, args.runs, Path(tmp), args.block)
                kept[f"{name}@{size}"] = {
                    "rows": rows_of(name, size, result, rss),
                    "failures": [[name, size, k, v] for k, v in failed.items()],
                    "stolen": result.machine.get("cpu_stolen_percent", 0.0),
                    "command": "PYTHONPATH=src python benchmarks/zoo_fast.py "
                    + " ".join(sys.argv[1:]),
                }
                store.write_text(json.dumps(kept, indent=1), encoding="utf-8")
                rows = [r for entry in kept.values() for r in entry["rows"]]
                failures = [f for entry in kept.values() for f in entry["failures"]]
                stolen = [entry["stolen"] for entry in kept.values()]
                # written after every model: a long run interrupted keeps what it measured
                text = report(args, started, load_start, rows, failures, stolen, kept)
                args.out.write_text(text, encoding="utf-8")
    print(args.out.read_text(encoding="utf-8"))


if __name__ == "__main__":
    main()
