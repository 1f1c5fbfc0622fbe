"""Video pipeline and Ray batch throughput on the dm0.5 fast path at 513 (random weights).

Regenerate ``benchmarks/results/video_stream.md`` and ``benchmarks/results/ray_batch.md``::

    PYTHONPATH=src python benchmarks/video_stream.py --frames 60 --repeats 3 --images 200

Stream: a synthetic clip is segmented by the sequential loop (decode, infer, encode one after
another) and by the pipelined one (three threads, bounded queues), in interleaved pairs, at 1 and
2 engine threads; ratios are per pair, so a noisy shared machine moves both sides of each.
GIL: how far a pure-Python loop gets while the engine runs in another thread (1.0 = as if alone).
Ray: ~200 JPEGs segmented by a plain single-process loop (what ``atrous predict`` does) and by
:func:`atrous.batch.segment_dataset` on a local Ray instance (2 CPUs: 2 actors x 1 thread, 1 actor x
2 threads), interleaved; "steady" is engines / median per-image time (actor start and model load
excluded), "end to end" from the call to the last image.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import cv2
import numpy as np

import atrous  # noqa: F401  (sets the passive OpenMP wait policy before torch loads)
from atrous.export.pipeline import load_source
from atrous.fastpath import export_fast_onnx
from atrous.outputs import expand_inputs, output_stems, write_prediction
from atrous.segmenter import Segmenter, fast_read_image
from atrous.video import stream_benchmark

NAME = "deeplabv3_mnv2_dm05_os16"
RESULTS = Path(__file__).parent / "results"
STREAM_HEADER = (
    "| clip | engine threads | frames | decode | pre | network | post | encode (ms) "
    "| sequential f/s | pipelined f/s | ratio (pairs) | CPU/s seq, pipe | bound | GIL |\n"
    + "|---" * 14
    + "|"
)


def write_clip(path: Path, frames: int, width: int, height: int, fps: float = 25.0) -> Path:
    """A synthetic clip: moving shapes over a textured background (mp4v, like real footage)."""
    rng = np.random.default_rng(0)
    background = cv2.GaussianBlur(rng.integers(0, 256, (height, width, 3), np.uint8), (0, 0), 3)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    for i in range(frames):
        frame = np.roll(background, 4 * i, axis=1)
        cv2.circle(frame, (width // 4 + 6 * i, height // 2), height // 5, (30, 160, 240), -1)
        cv2.rectangle(frame, (width // 2, height // 3), (width // 2 + 80, height // 3 + 120), 0, -1)
        writer.write(frame)
    writer.release()
    return path


def gil_share(segmenter: Segmenter, image: np.ndarray, seconds: float = 1.0) -> float:
    """Python-loop progress beside the engine's run in another thread, relative to alone."""
    batch, _ = segmenter.preprocess([image])

    def count() -> int:
        n, end = 0, time.perf_counter() + seconds
        while time.perf_counter() < end:
            n += 1
        return n

    alone = count()
    done = threading.Event()

    def run() -> None:
        while not done.is_set():
            segmenter.engine.run(batch)

    worker = threading.Thread(target=run)
    worker.start()
    beside = count()
    done.set()
    worker.join()
    return beside / alone


def pipeline_bound(stage_ms: dict[str, float], cores: int = 2) -> float:
    """The speed-up the pipeline could reach with ``cores`` free cores: the sum of the stages
    over the slowest thread (decode+pre, network, post+encode) or the work spread over cores."""
    ms = stage_ms
    total = sum(ms.values())
    threads = (ms["decode_ms"] + ms["preprocess_ms"], ms["network_ms"])
    threads += (ms["postprocess_ms"] + ms["encode_ms"],)
    return total / max(*threads, total / cores)


def stream_part(model: Path, scratch: Path, frames: int, repeats: int) -> list[str]:
    """Sequential vs pipelined frames/s on two clip sizes at 1 and 2 threads; markdown rows."""
    rows = []
    for width, height in ((640, 480), (1280, 720)):
        clip = write_clip(scratch / f"clip{width}.mp4", frames, width, height)
        for threads in (1, 2):
            seg = Segmenter.from_file(model, engine="onnxruntime", threads=threads)
            result = stream_benchmark(seg, clip, repeats=repeats)
            seq, pipe = (
                statistics.median(result.sequential_fps),
                statistics.median(result.pipelined_fps),
            )
            st = result.stage_ms
            gil = gil_share(seg, np.zeros((height, width, 3), np.uint8))
            rows.append(
                f"| {width}x{height} | {threads} | {result.frames} | "
                + " | ".join(f"{v:.1f}" for v in st.values())
                + " | "
                f"{seq:.1f} | {pipe:.1f} | **{result.ratio:.2f}x** "
                f"({', '.join(f'{r:.2f}' for r in result.ratios)}) | "
                f"{result.cpu_per_second[0]:.2f}, {result.cpu_per_second[1]:.2f} | "
                f"{pipeline_bound(st):.2f}x | {gil:.2f} |"
            )
            print(rows[-1], flush=True)
    return rows


def write_images(folder: Path, count: int) -> Path:
    """``count`` VOC-sized (500x375) JPEGs with shapes on texture."""
    rng = np.random.default_rng(1)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        image = cv2.GaussianBlur(rng.integers(0, 256, (375, 500, 3), np.uint8), (0, 0), 2)
        cv2.circle(image, (50 + 2 * i % 400, 180), 60, (200, 80, 40), -1)
        cv2.imwrite(str(folder / f"img{i:04d}.jpg"), image)
    return folder


def plain_run(model: Path, images: Path, out: Path) -> tuple[float, ...]:
    """What ``atrous predict`` does in one process at 2 threads: (end-to-end, steady) images/s."""
    start = time.perf_counter()
    seg = Segmenter.from_file(model, engine="onnxruntime", threads=2)
    files = expand_inputs([str(images)])
    per_image, first_done = [], 0.0
    for path, stem in zip(files, output_stems(files), strict=True):
        begin = time.perf_counter()
        image = fast_read_image(path)
        write_prediction(out, stem, image, seg.predict(image).mask, seg.card.palette)
        per_image.append(time.perf_counter() - begin)
        first_done = first_done or time.perf_counter()
    end = time.perf_counter()
    span = (len(files) - 1) / (end - first_done)
    return len(files) / (end - start), 1 / statistics.median(per_image), span


def ray_run(model: Path, images: Path, out: Path, actors: int, threads: int) -> tuple[float, ...]:
    """segment_dataset on the running Ray instance: (end-to-end, steady, span) images/s; steady
    from the actors' own per-image times (read, predict, write) with every actor busy, span from
    the first result reaching the driver to the last (results arrive a batch at a time)."""
    from atrous.batch import segment_dataset

    ms: list[float] = []
    stamps: list[float] = []

    def note(record: dict) -> None:
        ms.append(record["ms"])
        stamps.append(time.perf_counter())

    kw = {"engine": "onnxruntime", "threads": threads, "actors": actors}
    start = time.perf_counter()
    summary = segment_dataset(model, str(images), out, progress=note, **kw)
    end = time.perf_counter()
    assert summary.written == summary.total, summary
    span = (len(stamps) - 1) / (stamps[-1] - stamps[0])
    return summary.total / (end - start), actors * 1e3 / statistics.median(ms), span


def ray_part(model: Path, scratch: Path, count: int, rounds: int) -> list[str]:
    """Plain loop vs Ray configurations, interleaved over ``rounds``; markdown rows."""
    import ray

    images = write_images(scratch / "images", count)
    ray.init(num_cpus=2, include_dashboard=False, configure_logging=False, log_to_driver=False)
    configs = {
        "plain loop, 2 threads": None,
        "Ray 2 actors x 1 thread": (2, 1),
        "Ray 1 actor x 2 threads": (1, 2),
    }
    results: dict[str, list[tuple[float, ...]]] = {name: [] for name in configs}
    try:
        for r in range(rounds):
            for name, config in configs.items():
                out = scratch / f"out-{r}-{len(results[name])}-{config}"
                if config is None:
                    run = plain_run(model, images, out)
                else:
                    run = ray_run(model, images, out, *config)
                results[name].append(run)
                print(name, run, flush=True)
    finally:
        ray.shutdown()
    base = results["plain loop, 2 threads"]
    rows = []
    for name, runs in results.items():
        cells = []
        for column in range(3):
            values = [r[column] for r in runs]
            ratios = [r[column] / b[column] for r, b in zip(runs, base, strict=True)]
            cells.append(
                f"{statistics.median(values):.1f} ({statistics.median(ratios):.2f}x: "
                + ", ".join(f"{x:.2f}" for x in ratios)
                + ")"
            )
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    return rows


def cpu_times() -> list[int]:
    """The machine's CPU time counters (user ... steal) from /proc/stat."""
    return [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]


def steal_share(before: list[int], after: list[int]) -> float:
    """Share of the machine's CPU time the hypervisor took (steal) between two readings."""
    delta = [b - a for a, b in zip(before, after, strict=True)]
    return delta[7] / max(1, sum(delta))


def machine() -> str:
    """The CPU name and core count, as ``lscpu`` reports them."""
    text = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    name = next(
        (ln.split(":", 1)[1].strip() for ln in text.splitlines() if "Model name" in ln), "?"
    )
    load = Path("/proc/loadavg").read_text().split()[0]
    return f"{name}, {len(os.sched_getaffinity(0))} cores, load average {load} at the start"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--part", choices=["all", "stream", "ray"], default="all")
    args = parser.parse_args()
    command = "PYTHONPATH=src python benchmarks/video_stream.py " + " ".join(sys.argv[1:])
    cpu, counters = machine(), cpu_times()
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        net, card = load_source(NAME)  # random weights: timing does not depend on them
        model = export_fast_onnx(net, card, scratch / "fast.onnx")
        cv2.setNumThreads(1)  # as the fast path does: OpenCV does not compete with the engine
        if args.part in ("all", "stream"):
            rows = stream_part(model, scratch, args.frames, args.repeats)
            steal = steal_share(counters, cpu_times())
            write_stream_md(rows, command, f"{cpu}; {steal:.0%} of CPU time stolen", args)
        if args.part in ("all", "ray"):
            rows = ray_part(model, scratch, args.images, args.rounds)
            write_ray_md(rows, command, cpu, args)


def write_stream_md(rows: list[str], command: str, cpu: str, args) -> None:
    """benchmarks/results/video_stream.md."""
    text = (
        f"""# Video pipeline: pipelined vs sequential frames/s

dm0.5 DeepLabV3 (os16, 21 classes, random weights), fast path (fp32 ONNX Runtime graph, labels at
1/2 upsampled on the host), card size 513 (longest side), synthetic mp4v clips of {args.frames}
frames; overlay video written (mp4v) in both loops. Per stage: mean ms per frame from the
sequential run (decode = read + BGR->RGB; pre/post = the Segmenter's preprocess (resize to 513,
pad) and postprocess (labels at full size); network = the engine's run; encode = overlay +
write). The pipeline runs decode+pre, the network, post+encode in three threads.

- ratio: pipelined / sequential frames/s per interleaved pair (median, then each pair);
- CPU/s: CPU seconds the process used per second of the run (median; 1.0 = one core busy),
  above 1 only when stages really run at once;
- bound: the ratio the pipeline would reach with 2 free cores, from the stage times;
- GIL: a Python loop's progress while the engine runs in another thread, relative to alone (a
  run holding the GIL would leave it near 0; on one free core it is at most about 0.5).

Machine: {cpu}. Command: `{command}`

{STREAM_HEADER}
"""
        + "\n".join(rows)
        + "\n"
    )
    (RESULTS / "video_stream.md").write_text(text)


def write_ray_md(rows: list[str], command: str, cpu: str, args) -> None:
    """benchmarks/results/ray_batch.md."""
    text = (
        f"""# Batch segmentation on Ray: one node

{args.images} synthetic 500x375 JPEGs, dm0.5 fast path at 513 (fp32 ONNX Runtime graph, random
weights), palette mask + overlay JPEG written per image. Plain loop = what `atrous predict` does
(one process, 2 threads); Ray = `atrous.batch.segment_dataset` on a local instance (2 CPUs),
driver on the same machine. End to end = from the call (model load, actor start) to the last
image; steady = engines / median per-image time (read, predict, write, measured inside each engine
while all run); span = results from the first reaching the driver to the last (Ray hands them
over a batch of 4 at a time). Each cell: images/s (ratio to the plain loop in the same round:
median, then each round); {args.rounds} interleaved rounds.

Machine: {cpu}. Command: `{command}`

| configuration | end to end | steady | span |
|---|---|---|---|
"""
        + "\n".join(rows)
        + "\n"
    )
    (RESULTS / "ray_batch.md").write_text(text)


if __name__ == "__main__":
    main()
