"""``--engine auto``: the fastest engine available for this model on this machine.

Measured once per (model file, size, threads, machine) and cached as JSON under
``$ATROUS_CACHE`` (default ``~/.cache/atrous``), so later loads only read the cache.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import time
from collections.abc import Callable
from importlib.util import find_spec
from pathlib import Path

import numpy as np

from atrous._atomic import atomic_write_text
from atrous.runtimes.base import Engine

__all__ = ["available_engines", "cache_dir", "choose_engine", "time_engine"]

MODULE_OF_ENGINE = {
    "torch": "torch",
    "onnxruntime": "onnxruntime",
    "openvino": "openvino",
    "litert": "ai_edge_litert",
    "ncnn": "ncnn",
}


def available_engines(candidates: tuple[str, ...]) -> list[str]:
    """The candidates whose runtime package is installed."""
    return [e for e in candidates if find_spec(MODULE_OF_ENGINE[e]) is not None]


def cache_dir() -> Path:
    """Where measurements are cached: $ATROUS_CACHE or ~/.cache/atrous."""
    return Path(os.environ.get("ATROUS_CACHE") or Path.home() / ".cache" / "atrous")


def time_engine(engine: Engine, batch: np.ndarray, warmup: int = 2, runs: int = 5) -> float:
    """Median latency of ``engine.run(batch)`` in milliseconds."""
    for _ in range(warmup):
        engine.run(batch)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        engine.run(batch)
        times.append((time.perf_counter() - t0) * 1e3)
    return float(np.median(times))


def _key(path: Path, shape: tuple[int, ...], threads: int) -> str:
    stat = path.stat()
    text = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{shape}|{threads}|"
    text += f"{platform.machine()}|{platform.processor()}|{os.cpu_count()}"
    return hashlib.sha1(text.encode()).hexdigest()


def choose_engine(
    path: Path,
    candidates: list[str],
    threads: int,
    shape: tuple[int, ...],
    open_engine: Callable[[str], Engine],
) -> tuple[str, dict[str, float]]:
    """Name of the fastest candidate on a ``shape`` batch, and the timings (ms) it was chosen by.

    A cached decision is reused; one candidate is returned without measuring.
    """
    if len(candidates) == 1:
        return candidates[0], {}
    cache = cache_dir() / "engines.json"
    key = _key(path, shape, threads)
    try:
        table = json.loads(cache.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        table = {}
    entry = table.get(key)
    if entry and entry.get("engine") in candidates:
        return entry["engine"], entry["timings_ms"]
    batch = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    timings = {name: time_engine(open_engine(name), batch) for name in candidates}
    best = min(timings, key=timings.__getitem__)
    table[key] = {"engine": best, "timings_ms": timings, "model": str(path), "shape": list(shape)}
    with contextlib.suppress(OSError):  # a read-only home must not stop inference
        atomic_write_text(cache, json.dumps(table, indent=1))
    return best, timings
