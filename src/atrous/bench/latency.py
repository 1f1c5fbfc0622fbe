"""Latency benchmark: network-only and end-to-end timings, interleaved across models and engines.

Several targets measured in one call run interleaved (A, B, A, B, ...) rather than one after the
other, so a burst of load from another process hits all of them alike and their ratios hold on a
noisy machine. End to end means image file in, class mask at the original size out, through
:class:`atrous.segmenter.Segmenter` (decode + preprocess + infer + postprocess).
"""

from __future__ import annotations

import platform
import resource
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from time import perf_counter
from typing import Any

import cv2
import numpy as np

from atrous._atomic import scratch_directory
from atrous.bench.precision import model_precision
from atrous.bench.records import BenchRecord, BenchResult
from atrous.card import ModelCard
from atrous.data.io import fast_read_image
from atrous.errors import AtrousError, InputError
from atrous.runtimes import Engine, model_file_mb
from atrous.segmenter import Segmenter

__all__ = [
    "BenchTarget",
    "as_target",
    "benchmark",
    "synthetic_photo",
    "cpu_times",
    "stolen_percent",
    "cpu_model",
    "with_input_size",
]

MODES = ("network", "end_to_end")


@dataclass
class BenchTarget:
    """One thing to measure: a label and a way to open it as a Segmenter for a thread count.

    ``open(threads)`` is called once per thread count (runtimes fix their thread pools when a
    session is created). ``model_file`` gives the file size in the report.
    """

    label: str
    open: Callable[[int], Segmenter]
    model_file: Path | None = None


def as_target(item: Any, engine: str = "auto") -> BenchTarget:
    """Turn a model path / zoo name, a Segmenter, an (Engine, ModelCard) pair or a BenchTarget
    into a BenchTarget."""
    if isinstance(item, BenchTarget):
        return item
    if isinstance(item, Segmenter):
        return BenchTarget(f"{item.engine.name}", lambda threads: item)
    if isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], ModelCard):
        eng, card = item
        return BenchTarget(f"{card.name}:{eng.name}", lambda threads: Segmenter(eng, card))
    if isinstance(item, str | Path):
        path = Path(item)
        label = f"{path.name if path.exists() else str(item)}:{engine}"
        return BenchTarget(
            label,
            lambda threads: Segmenter.from_file(item, engine=engine, threads=threads),
            path if path.is_file() else None,
        )
    raise InputError(f"cannot benchmark {type(item).__name__}: give a model path or an Engine")


def with_input_size(segmenter: Segmenter, size: int | None) -> Segmenter:
    """The same engine with the card's input size set to ``size`` (None keeps the card's)."""
    if size is None:
        return segmenter
    card = segmenter.card
    pre = card.preprocessing.model_copy(update={"size": size})
    card = card.model_copy(update={"preprocessing": pre})
    sized = type(segmenter)(segmenter.engine, card, segmenter.path_used)
    sized.path_description = segmenter.path_description
    return sized


def synthetic_photo(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A smooth RGB test image (gradients and shapes) that compresses and decodes like a photo."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    image = np.stack(
        [128 + 100 * np.sin(xx / (17 + 10 * c) + yy / (29 + 7 * c) + c) for c in range(3)], -1
    )
    for _ in range(8):
        cy, cx = rng.integers(0, height), rng.integers(0, width)
        radius = int(
            rng.integers(max(2, min(height, width) // 12), max(3, min(height, width) // 4))
        )
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        cv2.circle(image, (int(cx), int(cy)), radius, colour, -1)
    return np.clip(image, 0, 255).astype(np.uint8)


def cpu_times() -> tuple[float, float] | None:
    """(stolen, total) CPU jiffies since boot from /proc/stat; None where there is none.

    On a virtual machine the hypervisor's 'steal' is time this machine wanted to run but was
    given to others: a run with a large stolen share measured the neighbours, not the code.
    """
    try:
        with open("/proc/stat", encoding="ascii") as f:
            fields = [float(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    return (fields[7] if len(fields) > 7 else 0.0), sum(fields[:8])


def stolen_percent(before: tuple[float, float] | None, after: tuple[float, float] | None) -> float:
    """Percent of CPU time stolen by the hypervisor between two :func:`cpu_times` readings."""
    if before is None or after is None or after[1] <= before[1]:
        return 0.0
    return round(100.0 * (after[0] - before[0]) / (after[1] - before[1]), 1)


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo where there is one)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _machine() -> dict[str, Any]:
    import onnxruntime
    import torch

    return {
        "platform": platform.platform(),
        "processor": cpu_model(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
        "opencv": cv2.__version__,
    }


_COST_CACHE: dict[tuple[str, int, int], float] = {}


def network_gmacs(card: ModelCard, height: int, width: int) -> float | None:
    """Multiply-adds (1e9) of the card's architecture at ``height`` x ``width``; None if unknown."""
    if card.model is None:
        return None
    key = (card.model.model_dump_json(), height, width)
    if key not in _COST_CACHE:
        from atrous.bench.cost import measure_cost
        from atrous.models import build_model

        _COST_CACHE[key] = measure_cost(build_model(card.model), (height, width)).gmacs
    return _COST_CACHE[key]


def _stats(times: list[float]) -> dict[str, float]:
    arr = np.asarray(times) * 1e3
    median = float(np.median(arr))
    return {
        "median_ms": median,
        "p90_ms": float(np.percentile(arr, 90)),
        "p99_ms": float(np.percentile(arr, 99)),
        "mean_ms": float(arr.mean()),
        "min_ms": float(arr.min()),
        "throughput_ips": 1e3 / median if median > 0 else float("inf"),
    }


@dataclass
class _Config:
    target: BenchTarget
    segmenter: Segmenter
    size: int | None
    threads: int
    batch: np.ndarray
    image_file: Path
    key: str
    times: dict[str, list[float]] = field(default_factory=lambda: {m: [] for m in MODES})
    stages: list[dict[str, float]] = field(default_factory=list)

    def step(self, mode: str) -> tuple[float, dict[str, float]]:
        """Run once in ``mode``; return the wall time in seconds and, end to end, the
        prediction's stage timings (empty for the network alone)."""
        engine: Engine = self.segmenter.engine
        if mode == "network":
            t0 = perf_counter()
            engine.run(self.batch)
            return perf_counter() - t0, {}
        t0 = perf_counter()
        prediction = self.segmenter.predict(self.image_file)
        return perf_counter() - t0, prediction.timings


def benchmark(
    models_or_engines: Sequence[Any],
    *,
    sizes: Sequence[int | None] = (None,),
    threads: Sequence[int] = (2,),
    runs: int = 30,
    warmup: int = 5,
    end_to_end: bool = True,
    engine: str | Sequence[str] = "auto",
    image_size: tuple[int, int] | None = None,
    progress: Callable[[int, int], None] | None = None,
    block: int = 1,
    image: str | Path | None = None,
) -> BenchResult:
    """Measure latency of several models/engines, interleaved, at each size and thread count.

    Args:
        models_or_engines: model paths / zoo names (opened on each of ``engine``: a runtime
            name, or 'fast' for the fast graph), Segmenters, (Engine, ModelCard) pairs or
            BenchTargets.
        sizes: network input sizes (the card's ``preprocessing.size``); None keeps the card's.
        threads: thread counts; each target is opened once per count.
        runs: timed runs per configuration; warmup: untimed runs before them.
        end_to_end: also time image file -> mask at the original size.
        image_size: (H, W) of the end-to-end test image; default: the network size.
        image: an image file to time end to end instead of a synthetic photo (a JPEG's
            content and size set its decode and label-step cost); its pixels are also the
            network's batch.
        progress: called with (done, total) after each round.
        block: runs of one target back to back in each round; with more than one, the first
            of each block is not timed (it meets the previous runtime's still-spinning thread
            pool: the int8 fast graph after eager PyTorch took 5.0 ms instead of 3.7), so each
            target is timed hot, as the only runtime of a serving process runs; ``runs``
            rounds give ``runs * (block - 1)`` timings.

    Returns:
        BenchResult with one record per (target, size, threads, mode) and the call order.
    """
    if runs < 1 or warmup < 0 or block < 1:
        raise InputError(
            f"runs and block must be >= 1 and warmup >= 0 (got {runs}, {block}, {warmup})"
        )
    stolen_at_start = cpu_times()
    engines = [engine] if isinstance(engine, str) else list(engine)
    # a path or zoo name is opened on each engine; anything already opened is measured once
    targets = [
        as_target(item, e)
        for item in models_or_engines
        for e in (engines if isinstance(item, str | Path) else engines[:1])
    ]
    modes = MODES if end_to_end else ("network",)
    # read once, by the decoder predict uses: the network-only batch is what end to end sees
    given = (Path(image), fast_read_image(image)) if image is not None else None
    tmp = scratch_directory("bench")
    configs: list[_Config] = []
    try:
        for target in targets:
            for t in threads:
                base = target.open(t)
                for size in sizes:
                    seg = with_input_size(base, size)
                    image_file, pixels = given or _synthetic_image(
                        seg.card, size, image_size, tmp.name
                    )
                    batch, _ = seg.preprocess([pixels])
                    key = f"{target.label}@{size or 'card'}/t{t}"
                    configs.append(_Config(target, seg, size, t, batch, image_file, key))
        order: list[str] = []
        total = warmup + runs
        for i in range(total):
            for cfg in configs:
                for mode in modes:
                    for j in range(block):
                        try:
                            elapsed, stages = cfg.step(mode)
                        except AtrousError:
                            raise
                        except Exception as exc:  # runtime errors name the target
                            raise InputError(f"{cfg.key}: {mode} run failed: {exc}") from None
                        if i >= warmup and (j > 0 or block == 1):
                            cfg.times[mode].append(elapsed)
                            if stages:
                                cfg.stages.append(stages)
                            order.append(f"{cfg.key}:{mode}")
            if progress is not None:
                progress(i + 1, total)
        records = [_record(cfg, mode) for cfg in configs for mode in modes]
    finally:
        tmp.cleanup()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    machine = {**_machine(), "cpu_stolen_percent": stolen_percent(stolen_at_start, cpu_times())}
    return BenchResult(records, runs, warmup, order, round(peak, 1), machine)


def _record(cfg: _Config, mode: str) -> BenchRecord:
    seg = cfg.segmenter
    h, w = cfg.batch.shape[1:3] if seg.card.preprocessing.layout == "NHWC" else cfg.batch.shape[2:]
    stats = _stats(cfg.times[mode])
    gmacs = network_gmacs(seg.card, int(h), int(w))
    gflops = 2 * gmacs / (stats["median_ms"] / 1e3) if gmacs and mode == "network" else None
    stages: dict[str, float] = {}
    if mode == "end_to_end" and cfg.stages:  # the timed runs' stages only (see benchmark)
        for name in cfg.stages[0]:
            stages[name] = float(np.median([s[name] for s in cfg.stages]))
    file = cfg.target.model_file
    return BenchRecord(
        label=cfg.target.label,
        engine=seg.engine.name,
        size=cfg.size,
        threads=cfg.threads,
        mode=mode,
        runs=len(cfg.times[mode]),
        precision=model_precision(seg.card, file),
        gmacs=round(gmacs, 4) if gmacs else None,
        gflops=round(gflops, 2) if gflops else None,
        file_mb=round(model_file_mb(file), 3) if file and file.is_file() else None,
        stages_ms=stages,
        input_size=[int(h), int(w)],
        path=seg.path_used,
        **{k: round(v, 6) for k, v in stats.items()},
    )


def _synthetic_image(
    card: ModelCard, size: int | None, image_size: tuple[int, int] | None, folder: str
) -> tuple[Path, np.ndarray]:
    """A synthetic photo of ``image_size`` (default: the network's side) as the end-to-end
    test image: its JPEG file, written once in ``folder``, and its RGB pixels."""
    h, w = image_size or _network_side(card, size)
    pixels = synthetic_photo(h, w)
    image_file = Path(folder) / f"photo_{h}x{w}.jpg"
    if not image_file.exists():
        cv2.imwrite(str(image_file), pixels[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])
    return image_file, pixels


def _network_side(card: ModelCard, size: int | None) -> tuple[int, int]:
    """The default test image: ``size`` square, else the card's fixed input (non-square
    included), else its size square (513 without one)."""
    if size is None and card.preprocessing.network_input() is not None:
        return card.preprocessing.network_input()  # type: ignore[return-value]
    side = size or card.preprocessing.size or 513
    return side, side
