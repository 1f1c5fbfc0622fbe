"""Where the time goes: per-op and per-block times of the whole path, image file to mask.

Network ops come from the runtime's own profiler (torch.profiler, ONNX Runtime's
``enable_profiling`` JSON, OpenVINO performance counters); decode, preprocess and postprocess are
timed around them. Ops are grouped into blocks (backbone stages by output stride, head, decoder,
classifier, upsample, argmax, layout reorders) by the module path the exporter keeps in node names,
so the same table reads the same for every runtime.
"""

from __future__ import annotations

import json
import math
import tempfile
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from time import perf_counter
from typing import Any

import numpy as np
import torch
from torch import nn

from atrous._atomic import atomic_write_text
from atrous.card import ModelCard
from atrous.data.io import read_image
from atrous.errors import InputError
from atrous.segmenter import Segmenter

__all__ = ["OpTime", "Profile", "block_labels", "block_of", "profile", "profile_segmenter"]

PIPELINE_BLOCKS = ("decode", "preprocess", "postprocess")


@dataclass
class OpTime:
    """Mean time per run of one op (or node) and the block it belongs to."""

    name: str
    op_type: str
    block: str
    ms: float


@dataclass
class Profile:
    """Per-block and per-op mean times (ms per run) and the measured mean total."""

    engine: str
    size: tuple[int, int]
    threads: int
    runs: int
    total_ms: float
    blocks: dict[str, float]
    ops: list[OpTime] = field(default_factory=list)

    @property
    def blocks_sum_ms(self) -> float:
        """Sum of the block times; close to ``total_ms`` when the profile accounts for the run."""
        return float(sum(self.blocks.values()))

    def top(self, n: int = 15) -> list[OpTime]:
        """The ``n`` most expensive ops."""
        return sorted(self.ops, key=lambda o: -o.ms)[:n]

    def by_op_type(self) -> dict[str, float]:
        """Time per op type (Conv, Resize, ...), largest first."""
        acc: dict[str, float] = defaultdict(float)
        for op in self.ops:
            acc[op.op_type] += op.ms
        return dict(sorted(acc.items(), key=lambda kv: -kv[1]))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary."""
        data = asdict(self)
        data["blocks_sum_ms"] = self.blocks_sum_ms
        return data

    def to_json(self, path: str | Path | None = None) -> str:
        """Serialise; also write atomically when ``path`` is given."""
        text = json.dumps(self.to_dict(), indent=2)
        if path is not None:
            atomic_write_text(path, text + "\n")
        return text

    def figure(self):
        """Horizontal bar chart of the block times (matplotlib figure)."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        names = list(self.blocks)
        fig, ax = plt.subplots(figsize=(8, 0.35 * len(names) + 1.2))
        ax.barh(names, [self.blocks[n] for n in names], color="#4477aa")
        ax.invert_yaxis()
        ax.set_xlabel(f"ms per run (total {self.total_ms:.1f} ms)")
        ax.set_title(f"{self.engine}, {self.size[0]}x{self.size[1]}, {self.threads} threads")
        return fig


# -- mapping ops to blocks -----------------------------------------------------------------------
def block_labels(model: nn.Module, size: tuple[int, int]) -> dict[str, str]:
    """Module path -> block label for a DeepLab-like model, from one forward pass at ``size``.

    Backbone modules (children of the backbone, or of its Sequential containers) are labelled by
    the stride their output runs at ("backbone 1/4"); other top-level modules by their name.
    """
    labels: dict[str, str] = {}
    handles = []
    height = size[0]

    def hook(path: str):
        def fn(module, inputs, output) -> None:
            out = output[-1] if isinstance(output, list | tuple) else output
            if isinstance(out, torch.Tensor) and out.ndim == 4:
                reduction = 2 ** round(math.log2(height / out.shape[-2]))
                labels[path] = f"backbone 1/{reduction}"

        return fn

    for name, child in model.named_children():
        if name != "backbone":
            labels[name] = name
            continue
        for sub_name, sub in child.named_children():
            inner = list(sub.named_children()) if isinstance(sub, nn.Sequential) else []
            for path, module in [(f"backbone.{sub_name}.{n}", m) for n, m in inner] or [
                (f"backbone.{sub_name}", sub)
            ]:
                handles.append(module.register_forward_hook(hook(path)))
    try:
        with torch.inference_mode():
            model.eval()(torch.zeros(1, 3, *size))
    finally:
        for h in handles:
            h.remove()
    return labels


_OP_BLOCKS = {
    "Resize": "upsample",
    "upsample_bilinear2d": "upsample",
    "Interpolate": "upsample",
    "ArgMax": "argmax",
    "argmax": "argmax",
    "ReorderInput": "layout",
    "ReorderOutput": "layout",
    "Transpose": "layout",
    "Reorder": "layout",
}


def block_of(node_name: str, op_type: str, labels: dict[str, str]) -> str:
    """The block of an op: the module path found in its name, else by op type, else 'other'."""
    segments = [s for s in node_name.replace("::", "/").split("/") if s]
    for i in range(len(segments)):
        dotted = ".".join(segments[i:]) + "."
        best = max((p for p in labels if dotted.startswith(p + ".")), key=len, default=None)
        if best is not None:
            return labels[best]
    if "normalize" in node_name:
        return "normalize"
    base = op_type.split("::")[-1]
    return _OP_BLOCKS.get(base, "other")


# -- running the pipeline under a profiler -------------------------------------------------------
def _pipeline_runs(
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


def _torch_ops(
    segmenter: Segmenter, image_file: Path, runs: int, warmup: int, labels: dict[str, str]
) -> tuple[list[OpTime], dict[str, float], float]:
    """Profile a TorchEngine: blocks from record_function ranges around modules, ops from aten."""
    from torch.profiler import ProfilerActivity, record_function

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
        _pipeline_runs(seg, image_file, 1, warmup, lambda: None)
        with prof:
            stages, total = _pipeline_runs(seg, image_file, runs, 0, lambda: None)
    finally:
        for h in handles:
            h.remove()
    ops: dict[tuple[str, str], float] = defaultdict(float)
    for ev in prof.events():
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
    op_list = [OpTime(n, n.split("::")[-1], b, ms / runs) for (n, b), ms in ops.items()]
    return _with_overhead(op_list, stages), stages, total


def _standardised_like(segmenter: Segmenter, engine: Any) -> Any:
    """``engine`` with the output handling the Segmenter's own engine has (``load_engine`` wraps
    a channels-last or labels-out model in StandardOutput), so postprocessing reads the
    profiling engine's output the same way."""
    from atrous.runtimes.contract import StandardOutput

    own = segmenter.engine
    if isinstance(own, StandardOutput):
        return StandardOutput(engine, own.layout, own.output)
    return engine


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
    stages, total = _pipeline_runs(seg, image_file, runs, warmup, lambda: None)
    events = json.loads(Path(session.end_profiling()).read_text())
    return events, stages, total


def _ort_ops(
    path: Path, segmenter: Segmenter, image_file: Path, runs: int, warmup: int, labels
) -> tuple[list[OpTime], dict[str, float], float]:
    """Profile an ONNX model with ONNX Runtime's profiler on a session of the same threads."""
    with tempfile.TemporaryDirectory(prefix="atrous-prof-") as tmp:
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
    return _with_overhead(op_list, stages), stages, total


def _with_overhead(op_list: list[OpTime], stages: dict[str, float]) -> list[OpTime]:
    """The ops plus the time inside engine.run not spent in kernels (binding, executor, thread
    hand-offs, waits for cores, reading counters), measured against the network stage's wall
    time so that the blocks add up to the total."""
    idle = stages["network"] - sum(op.ms for op in op_list)
    if idle > 0:
        op_list = [*op_list, OpTime("session overhead", "overhead", "runtime overhead", idle)]
    return op_list


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


def _openvino_ops(
    path: Path,
    segmenter: Segmenter,
    image_file: Path,
    runs: int,
    warmup: int,
    labels,
    input_shape: tuple[int, ...],
) -> tuple[list[OpTime], dict[str, float], float]:
    """Profile with OpenVINO performance counters (PERF_COUNT) on a latency-hinted model, with a
    dynamic input fixed to ``input_shape`` (OpenVinoEngine compiles repeated sizes that way)."""
    import openvino as ov

    from atrous.runtimes.openvino_engine import cpu_config

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
    stages, total = _pipeline_runs(seg, image_file, runs, warmup, acc.clear)
    op_list = [OpTime(n, t, block_of(n, t, labels), ms / runs) for (n, t), ms in acc.items()]
    return _with_overhead(op_list, stages), stages, total


def profile_segmenter(
    segmenter: Segmenter,
    *,
    model_file: str | Path | None = None,
    size: int | None = None,
    runs: int = 20,
    warmup: int = 3,
    image_size: tuple[int, int] | None = None,
) -> Profile:
    """Profile one Segmenter end to end (image file in, mask out) at network size ``size``.

    The network is profiled by its engine's runtime: torch.profiler for TorchEngine, ONNX Runtime's
    profiler or OpenVINO counters for ``model_file`` (.onnx / .xml) otherwise.
    """
    import cv2

    from atrous.bench.latency import synthetic_photo, with_input_size

    seg = with_input_size(segmenter, size)
    side = size or seg.card.preprocessing.size or 513
    h, w = image_size or (side, side)
    net_size = seg.target_size(h, w)
    labels = _labels_for(seg.card, segmenter, net_size)
    with tempfile.TemporaryDirectory(prefix="atrous-prof-") as tmp:
        image_file = Path(tmp) / "photo.jpg"
        photo = synthetic_photo(h, w)
        cv2.imwrite(str(image_file), photo[..., ::-1])
        kind = seg.engine.name
        suffix = Path(model_file).suffix if model_file is not None else None
        if kind == "torch":
            ops, stages, total = _torch_ops(seg, image_file, runs, warmup, labels)
        elif suffix == ".onnx" and kind != "openvino":
            ops, stages, total = _ort_ops(Path(model_file), seg, image_file, runs, warmup, labels)
            kind = "onnxruntime"
        elif suffix in (".xml", ".onnx"):
            shape = seg.preprocess([photo])[0].shape
            ops, stages, total = _openvino_ops(
                Path(model_file), seg, image_file, runs, warmup, labels, shape
            )
            kind = "openvino"
        elif kind == "litert":
            raise InputError(
                f"{model_file}: LiteRT files have no per-op profiler here; profile the .pt or "
                ".onnx it was exported from (same graph, torch / ONNX Runtime / OpenVINO)"
            )
        else:
            raise InputError(f"cannot profile engine '{kind}' without its model file")
    blocks: dict[str, float] = {"decode": stages["decode"], "preprocess": stages["preprocess"]}
    for op in sorted(ops, key=lambda o: o.block):
        blocks[op.block] = blocks.get(op.block, 0.0) + op.ms
    blocks["postprocess"] = stages["postprocess"]
    return Profile(kind, net_size, seg.engine.threads, runs, total, blocks, ops)


def _labels_for(card: ModelCard, segmenter: Segmenter, size: tuple[int, int]) -> dict[str, str]:
    """Block labels from the engine's own model when it has one, else from the card's config."""
    model = getattr(segmenter.engine, "model", None)  # OpenVINO's engine has a non-torch one
    if not isinstance(model, nn.Module):
        model = None
    if model is None and card.model is not None:
        from atrous.models import build_model

        model = build_model(card.model)
    if model is None:
        return {}
    return block_labels(model, size)


def profile(
    model: str | Path,
    *,
    engine: str = "auto",
    threads: int = 2,
    size: int | None = None,
    runs: int = 20,
    warmup: int = 3,
) -> Profile:
    """Open a model file or zoo name on ``engine`` (incl. 'fast') and profile it end to end."""
    seg = Segmenter.from_file(model, engine=engine, threads=threads)
    path = getattr(seg.engine, "path", None) or Path(str(model))  # the fast graph's own file
    return profile_segmenter(
        seg, model_file=path if path.is_file() else None, size=size, runs=runs, warmup=warmup
    )
