"""The profiler's runtime side: the pipeline (decode -> preprocess -> engine -> postprocess) run
under each runtime's own profiler (torch.profiler, ONNX Runtime's ``enable_profiling`` JSON,
OpenVINO performance counters), its op times read back as :class:`OpTime` rows."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path
from time import perf_counter
from typing import Any

import numpy as np
import torch
from torch.profiler import ProfilerActivity, record_function

from atrous._atomic import scratch_directory
from atrous.bench._profile_blocks import OpTime, block_of, with_overhead
from atrous.data.io import read_image
from atrous.runtimes.contract import StandardOutput
from atrous.runtimes.openvino_engine import cpu_config
from atrous.segmenter import Segmenter

__all__ = ["ort_ops", "openvino_ops", "pipeline_runs", "torch_ops"]

NetworkOps = tuple[list[OpTime], dict[str, float], float]  # ops, stage means (ms), total (ms)


def pipeline_runs(
    segmenter: Segmenter, image_file: Path, runs: int, warmup: int, on_run: Callable[[], None]
) -> tuple[dict[str, float], float]:
    """Run decode -> preprocess -> engine -> postprocess; mean stage and total times (ms)."""
    stages: dict[str, float] = defaultdict(float)
    total = 0.0
    for i in range(warmup + runs):
        if i == warmup:
            on_run()
        t0 = perf_counter()
        image = read_image(image_file)
        t1 = perf_counter()
        batch, metas = segmenter.preprocess([image])
        t2 = perf_counter()
        output = segmenter.engine.run(batch)
        t3 = perf_counter()
        segmenter.postprocess(output[0], metas[0])
        t4 = perf_counter()
        if i >= warmup:
            stages["decode"] += t1 - t0
            stages["preprocess"] += t2 - t1
            stages["network"] += t3 - t2
            stages["postprocess"] += t4 - t3
            total += t4 - t0
    return {k: v * 1e3 / runs for k, v in stages.items()}, total * 1e3 / runs


# -- torch ---------------------------------------------------------------------------------------
def torch_ops(
    segmenter: Segmenter, image_file: Path, runs: int, warmup: int, labels: dict[str, str]
) -> NetworkOps:
    """Profile a TorchEngine: blocks from record_function ranges around modules, ops from aten."""
    model = segmenter.engine.model
    modules = dict(model.named_modules())
    handles, open_ranges = [], {}
    for path in labels:
        module = modules[path]

        def pre(mod, inputs, path=path):
            open_ranges[path] = record_function(f"block::{path}")
            open_ranges[path].__enter__()

        def post(mod, inputs, output, path=path):
            open_ranges.pop(path).__exit__(None, None, None)

        handles += [module.register_forward_pre_hook(pre), module.register_forward_hook(post)]
    prof = torch.profiler.profile(activities=[ProfilerActivity.CPU])
    engine = segmenter.engine

    class _Marked:
        """The same engine, its runs marked so only network ops are attributed to blocks."""

        name, threads = engine.name, engine.threads

        def run(self, batch):
            with record_function("atrous::network"):
                return engine.run(batch)

    seg = type(segmenter)(_Marked(), segmenter.card)
    try:
        pipeline_runs(seg, image_file, 1, warmup, lambda: None)
        with prof:
            stages, total = pipeline_runs(seg, image_file, runs, 0, lambda: None)
    finally:
        for h in handles:
            h.remove()
    op_list = _torch_op_times(prof.events(), labels, runs)
    return with_overhead(op_list, stages), stages, total


def _torch_op_times(events: Iterable[Any], labels: dict[str, str], runs: int) -> list[OpTime]:
    """Mean ms per run of the aten ops inside the network, by block; a block's time outside its
    kernels is its 'framework overhead'."""
    ops: dict[tuple[str, str], float] = defaultdict(float)
    for ev in events:
        if ev.name.startswith("block::"):
            # the range covers the module's whole forward: kernels plus framework overhead
            ops[("framework overhead", labels[ev.name[7:]])] += ev.cpu_time_total / 1e3
            continue
        if not ev.name.startswith("aten::"):
            continue
        block, parent, top_level, in_network = None, ev.cpu_parent, True, False
        while parent is not None:
            if parent.name.startswith("block::") and block is None:
                block = labels[parent.name[7:]]
            elif parent.name == "atrous::network":
                in_network = True
            elif parent.name.startswith("aten::"):
                top_level = False
            parent = parent.cpu_parent
        if not in_network or (block is None and not top_level):
            continue  # pre/postprocessing, or counted in its top-level aten parent
        if block is None:
            ops[(ev.name, block_of("", ev.name, {}))] += ev.cpu_time_total / 1e3
        else:
            ops[(ev.name, block)] += ev.self_cpu_time_total / 1e3
            ops[("framework overhead", block)] -= ev.self_cpu_time_total / 1e3
    return [OpTime(n, n.split("::")[-1], b, ms / runs) for (n, b), ms in ops.items()]


# -- ONNX Runtime and OpenVINO -------------------------------------------------------------------
def _standardised_like(segmenter: Segmenter, engine: Any) -> Any:
    """``engine`` with the output handling the Segmenter's own engine has (``load_engine`` wraps
    a channels-last or labels-out model in StandardOutput), so postprocessing reads the
    profiling engine's output the same way."""
    own = segmenter.engine
    if isinstance(own, StandardOutput):
        return StandardOutput(engine, own.layout, own.output)
    return engine


class _SessionEngine:
    """A minimal Engine over an ONNX Runtime session (used only while profiling)."""

    name = "onnxruntime"

    def __init__(self, session, threads: int) -> None:
        self.session, self.threads = session, threads
        self.input_name = session.get_inputs()[0].name

    def run(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: batch})[0]

    def describe(self) -> dict[str, Any]:
        return {"engine": self.name, "threads": self.threads}


def _ort_profile_events(
    path: Path, segmenter: Segmenter, image_file: Path, runs: int, warmup: int, tmp: str
) -> tuple[list[dict], dict[str, float], float]:
    """Run the pipeline on a profiling ONNX Runtime session; its events are written under tmp."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = segmenter.engine.threads
    opts.inter_op_num_threads = 1
    opts.enable_profiling = True
    opts.profile_file_prefix = str(Path(tmp) / "ort")
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    engine = _SessionEngine(session, segmenter.engine.threads)
    seg = type(segmenter)(_standardised_like(segmenter, engine), segmenter.card)
    stages, total = pipeline_runs(seg, image_file, runs, warmup, lambda: None)
    events = json.loads(Path(session.end_profiling()).read_text())
    return events, stages, total


def ort_ops(
    path: Path, segmenter: Segmenter, image_file: Path, runs: int, warmup: int, labels
) -> NetworkOps:
    """Profile an ONNX model with ONNX Runtime's profiler on a session of the same threads."""
    with scratch_directory("prof") as tmp:
        events, stages, total = _ort_profile_events(path, segmenter, image_file, runs, warmup, tmp)
    ops: dict[tuple[str, str], float] = defaultdict(float)
    model_runs = sorted(
        (e for e in events if e.get("cat") == "Session" and e["name"] == "model_run"),
        key=lambda e: e["ts"],
    )
    cutoff = model_runs[warmup - 1]["ts"] + model_runs[warmup - 1]["dur"] if warmup else 0
    n_runs = len(model_runs) - warmup
    for e in events:
        if e.get("cat") != "Node" or e["ts"] < cutoff:
            continue
        if e["name"].endswith("_kernel_time"):
            name = e["name"][: -len("_kernel_time")]
            ops[(name, e["args"].get("op_name", "?"))] += e["dur"] / 1e3
    op_list = [
        OpTime(n, t, block_of(n, t, labels), ms / max(1, n_runs)) for (n, t), ms in ops.items()
    ]
    return with_overhead(op_list, stages), stages, total


def openvino_ops(
    path: Path,
    segmenter: Segmenter,
    image_file: Path,
    runs: int,
    warmup: int,
    labels,
    input_shape: tuple[int, ...],
) -> NetworkOps:
    """Profile with OpenVINO performance counters (PERF_COUNT) on a latency-hinted model, with a
    dynamic input fixed to ``input_shape`` (OpenVinoEngine compiles repeated sizes that way)."""
    import openvino as ov

    core = ov.Core()
    model = core.read_model(str(path))
    if model.inputs[0].get_partial_shape().is_dynamic:
        model.reshape({0: list(input_shape)})
    settings = {**cpu_config(segmenter.engine.threads), "PERF_COUNT": True}  # as the engine runs
    compiled = core.compile_model(model, "CPU", settings)
    request = compiled.create_infer_request()
    acc: dict[tuple[str, str], float] = defaultdict(float)

    class _Engine:
        name = "openvino"
        threads = segmenter.engine.threads

        def run(self, batch):
            request.infer({0: batch})
            for info in request.get_profiling_info():
                acc[(info.node_name, info.node_type)] += info.real_time.total_seconds() * 1e3
            return request.get_output_tensor(0).data.copy()

        def describe(self):
            return {"engine": self.name}

    seg = type(segmenter)(_standardised_like(segmenter, _Engine()), segmenter.card)
    stages, total = pipeline_runs(seg, image_file, runs, warmup, acc.clear)
    op_list = [OpTime(n, t, block_of(n, t, labels), ms / runs) for (n, t), ms in acc.items()]
    return with_overhead(op_list, stages), stages, total
