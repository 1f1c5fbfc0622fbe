"""Pick a deployment configuration: measure candidates, keep the Pareto frontier, recommend one.

Each candidate (model x input size x precision x engine x threads x label stride, and for zoo
models the block variants: upsampling, activation, separable ASPP) is measured on
this machine: mIoU with the one evaluator on the validation data, end-to-end median latency with
the benchmark. Measurements are cached on disk (keyed by the candidate and the model file's
size and modification time), so a second search only measures what is new.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from atrous._atomic import atomic_write_text, scratch_directory
from atrous.bench._variants import VARIANT_KEYS, VARIANT_VALUES, check_variants, load_variant
from atrous.bench.latency import benchmark, with_input_size
from atrous.bench.pareto import Candidate, Measured, OptimizeResult, pareto_frontier, recommend
from atrous.errors import InputError
from atrous.evaluate import evaluate
from atrous.export.onnx import export_onnx
from atrous.fastpath import (
    export_fast_onnx,
    fast_card,
    fast_engine,
    quantize_fast_onnx,
)
from atrous.preprocess import preprocess
from atrous.quantize.nncf_ptq import nncf_available
from atrous.runtimes import TorchEngine
from atrous.segmenter import Segmenter, fast_segmenter
from atrous.sources import load_engine

__all__ = [
    "SEARCH_KEYS",
    "candidates",
    "int8_suffix",
    "open_candidate",
    "optimize",
    "parse_search",
]

SEARCH_KEYS = ("model", "size", "precision", "engine", "threads", "label_stride", *VARIANT_KEYS)
ENGINES = ("fast", "onnxruntime", "torch")


def parse_search(text: str | None) -> dict[str, list[Any]]:
    """'size=257,513;precision=fp32,int8' -> {'size': [257, 513], 'precision': [...]}.

    A bare list of keys ('size,precision') searches those keys over their default values.
    """
    defaults: dict[str, list[Any]] = {
        "size": [257, 385, 513],
        "precision": ["fp32", "int8"],
        "engine": ["fast", "onnxruntime"],
        "threads": [1, 2],
        "label_stride": [1, 2, 4],
        **VARIANT_VALUES,
    }
    if not text:
        return {}
    space: dict[str, list[Any]] = {}
    if "=" not in text:
        for key in (k.strip() for k in text.split(",") if k.strip()):
            if key not in defaults:
                raise InputError(f"--search: unknown key '{key}'; use {', '.join(defaults)}")
            space[key] = defaults[key]
        return space
    for part in (p for p in text.split(";") if p.strip()):
        key, _, values = part.partition("=")
        key = key.strip()
        if key not in SEARCH_KEYS:
            raise InputError(f"--search: unknown key '{key}'; use {', '.join(SEARCH_KEYS)}")
        items = [v.strip() for v in values.split(",") if v.strip()]
        if not items:
            raise InputError(f"--search: no values for '{key}'")
        try:
            space[key] = (
                [int(v) for v in items] if key in ("size", "threads", "label_stride") else items
            )
        except ValueError:
            raise InputError(f"--search: '{key}' takes integers, got '{values}'") from None
    return space


def candidates(models: Sequence[str], search: dict[str, list[Any]]) -> list[Candidate]:
    """Every combination of the searched values (others at their defaults), invalid ones dropped."""
    space = {"model": list(models), **{k: v for k, v in search.items() if k != "model"}}
    if "model" in search:
        space["model"] = list(search["model"])
    keys = list(space)
    out = []
    for values in itertools.product(*(space[k] for k in keys)):
        cand = Candidate(**dict(zip(keys, values, strict=True)))
        if cand.engine not in ENGINES:
            raise InputError(f"unknown engine '{cand.engine}' in the search; use {ENGINES}")
        if cand.precision == "int8" and cand.engine != "fast":
            continue  # int8 is built for the fast graph only
        if cand.engine != "fast" and cand.label_stride != 1 and "label_stride" in search:
            continue  # label stride is a fast-graph setting
        check_variants(cand.model, cand.variants)
        if cand.engine == "fast" and cand.upsampling not in ("", "bilinear"):
            continue  # the fast graph's host upsample is bilinear
        out.append(cand)
    return list(dict.fromkeys(out))


def int8_suffix() -> str:
    """The file type of an int8 fast-graph candidate: OpenVINO IR (its fastest build, see
    ``atrous.fastpath``) when NNCF is installed, else ONNX for ONNX Runtime."""
    return ".xml" if nncf_available() else ".onnx"


def open_candidate(cand: Candidate, work_dir: Path, calibration: list | None = None):
    """A Segmenter for the candidate (exports and quantizes into ``work_dir`` as needed)."""
    net, card, stem = load_variant(cand.model, cand.variants)
    if cand.engine == "torch":
        seg = Segmenter(TorchEngine(net, cand.threads), card)
    elif cand.engine == "onnxruntime":
        path = work_dir / f"{stem}-plain.onnx"
        if not path.exists():
            export_onnx(net, card, path)
        engine, loaded = load_engine(path, "onnxruntime", cand.threads)
        seg = Segmenter(engine, loaded)
    elif cand.precision == "int8":
        fp32 = work_dir / f"{stem}-fast-s{cand.label_stride}.onnx"
        int8 = fp32.with_name(f"{fp32.stem}-int8{int8_suffix()}")
        fcard = fast_card(card, cand.label_stride)
        if not fp32.exists():
            export_fast_onnx(net, card, fp32, label_stride=cand.label_stride)
        if not int8.exists():
            calib = [preprocess(fcard, [im])[0] for im in (calibration or [])]
            quantize_fast_onnx(fp32, int8, calib, fcard)
        engine, loaded = load_engine(int8, fast_engine(int8), cand.threads)
        seg = Segmenter(engine, loaded)
    else:
        seg = fast_segmenter(
            (net, card), threads=cand.threads, label_stride=cand.label_stride, cache_dir=work_dir
        )
    return with_input_size(seg, cand.size)


class _Cache:
    """Measurements on disk: a JSON object of key -> {miou, latency_ms}."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.data: dict[str, dict[str, float]] = {}
        if path is not None and path.exists():
            try:
                self.data = json.loads(path.read_text())
            except ValueError:
                self.data = {}

    def get(self, key: str) -> dict[str, float] | None:
        return self.data.get(key)

    def put(self, key: str, value: dict[str, float]) -> None:
        self.data[key] = value
        if self.path is not None:
            atomic_write_text(self.path, json.dumps(self.data, indent=1, sort_keys=True))


def _identity(cand: Candidate, data_id: str) -> str:
    """Cache key: the candidate (with the int8 build it runs), the model file's size and mtime,
    and the data's identity."""
    path = Path(cand.model)
    stamp = f"{path.stat().st_size}:{path.stat().st_mtime_ns}" if path.is_file() else "zoo"
    build = f"|int8{int8_suffix()}" if cand.precision == "int8" else ""
    return f"{cand.key}{build}|{stamp}|{data_id}"


def optimize(
    val_data: Any,
    latency_budget_ms: float,
    *,
    models: Sequence[str],
    search: dict[str, list[Any]] | None = None,
    cache: str | Path | None = None,
    work_dir: str | Path | None = None,
    runs: int = 20,
    limit: int | None = None,
    measure: Callable[[Candidate], tuple[float, float]] | None = None,
    progress: Callable[[Candidate, Measured], None] | None = None,
) -> OptimizeResult:
    """Measure every candidate of ``search`` over ``models``; return frontier and recommendation.

    Args:
        val_data: a validation dataset for :func:`atrous.evaluate.evaluate` (unused if ``measure``).
        latency_budget_ms: end-to-end median latency the recommendation must meet.
        models: checkpoints or zoo names (the 'model' search dimension).
        search: {key: values} over SEARCH_KEYS; see :func:`parse_search`.
        cache: JSON file of earlier measurements (read and updated).
        work_dir: where exported/quantized graphs go (default: next to the cache or a temp dir).
        runs: timed runs per latency measurement; limit: evaluate only the first N samples.
        measure: replaces the real measurement with ``candidate -> (miou, latency_ms)``.
    """
    if latency_budget_ms <= 0:
        raise InputError(f"latency budget must be positive, got {latency_budget_ms} ms")
    cands = candidates(models, search or {})
    if not cands:
        raise InputError("the search has no valid candidates")
    store = _Cache(Path(cache) if cache else None)
    tmp = None
    if work_dir is None:
        if cache:
            work_dir = Path(cache).with_suffix(".models")
        else:
            tmp = scratch_directory("opt")
            work_dir = tmp.name
    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    # "|fraction": measurements cached when mIoU was stored in points are not reused
    data_id = getattr(val_data, "name", type(val_data).__name__) + f":{limit}|fraction"
    measure = measure or _real_measure(val_data, work, runs, limit)
    measured = []
    try:
        for cand in cands:
            key = _identity(cand, data_id)
            hit = store.get(key)
            if hit is not None:
                point = Measured(cand, hit["miou"], hit["latency_ms"], cached=True)
            else:
                miou, latency = measure(cand)
                store.put(key, {"miou": miou, "latency_ms": latency})
                point = Measured(cand, miou, latency)
            measured.append(point)
            if progress is not None:
                progress(cand, point)
    finally:
        if tmp is not None:
            tmp.cleanup()
    frontier = pareto_frontier(measured)
    best = recommend(frontier, latency_budget_ms)
    notes = {} if best else {"warning": "no candidate meets the budget; the fastest is shown"}
    if best is None:
        best = frontier[0]
    return OptimizeResult(measured, frontier, best, latency_budget_ms, notes)


def _real_measure(val_data: Any, work: Path, runs: int, limit: int | None):
    """candidate -> (mIoU from the evaluator, end-to-end median ms from the benchmark)."""

    def measure(cand: Candidate) -> tuple[float, float]:
        calibration = [val_data[i].image for i in range(min(8, len(val_data)))]
        seg = open_candidate(cand, work, calibration)
        miou = round(float(evaluate(seg, val_data, limit=limit, progress=False).miou), 4)
        image_size = tuple(calibration[0].shape[:2]) if calibration else None
        result = benchmark(
            [seg], threads=[cand.threads], runs=runs, warmup=3, image_size=image_size
        )
        return miou, result.find(result.records[0].label, "end_to_end").median_ms

    return measure
