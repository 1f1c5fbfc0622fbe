"""Where the time goes: per-op and per-block times of the whole path, image file to mask.

Network ops come from the runtime's own profiler (torch.profiler, ONNX Runtime's
``enable_profiling`` JSON, OpenVINO performance counters); decode, preprocess and postprocess are
timed around them. Ops are grouped into blocks (backbone stages by output stride, head, decoder,
classifier, upsample, argmax, layout reorders) by the module path the exporter keeps in node names,
so the same table reads the same for every runtime.

This module is the public API (:func:`profile`, :func:`profile_segmenter`, :class:`Profile`);
the block attribution lives in ``bench._profile_blocks``, the per-runtime profilers in
``bench._profile_runtimes``.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2

from atrous._atomic import atomic_write_text, scratch_directory
from atrous.bench._profile_blocks import OpTime, block_labels, block_of, labels_for
from atrous.bench._profile_runtimes import NetworkOps, openvino_ops, ort_ops, torch_ops
from atrous.bench.latency import synthetic_photo, with_input_size
from atrous.errors import InputError
from atrous.segmenter import Segmenter

__all__ = [
    "OpTime",
    "Profile",
    "block_labels",
    "block_of",
    "open_profiled",
    "profile",
    "profile_segmenter",
]

PIPELINE_BLOCKS = ("decode", "preprocess", "postprocess")


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
    seg = with_input_size(segmenter, size)
    side = size or seg.card.preprocessing.size or 513
    h, w = image_size or (side, side)
    net_size = seg.target_size(h, w)
    labels = labels_for(seg.card, segmenter.engine, net_size)
    with scratch_directory("prof") as tmp:
        image_file = Path(tmp) / "photo.jpg"
        photo = synthetic_photo(h, w)
        cv2.imwrite(str(image_file), photo[..., ::-1])
        kind, (ops, stages, total) = _network_ops(
            seg, model_file, image_file, runs, warmup, labels, photo
        )
    blocks: dict[str, float] = {"decode": stages["decode"], "preprocess": stages["preprocess"]}
    for op in sorted(ops, key=lambda o: o.block):
        blocks[op.block] = blocks.get(op.block, 0.0) + op.ms
    blocks["postprocess"] = stages["postprocess"]
    return Profile(kind, net_size, seg.engine.threads, runs, total, blocks, ops)


def _network_ops(
    seg: Segmenter,
    model_file: str | Path | None,
    image_file: Path,
    runs: int,
    warmup: int,
    labels: dict[str, str],
    photo: Any,
) -> tuple[str, NetworkOps]:
    """(runtime name, its profile of the pipeline): the engine's own runtime for torch, ONNX
    Runtime or OpenVINO on ``model_file`` otherwise; LiteRT has no per-op profiler here."""
    kind = seg.engine.name
    suffix = Path(model_file).suffix if model_file is not None else None
    if kind == "torch":
        return kind, torch_ops(seg, image_file, runs, warmup, labels)
    if suffix == ".onnx" and kind != "openvino":
        return "onnxruntime", ort_ops(Path(model_file), seg, image_file, runs, warmup, labels)
    if suffix in (".xml", ".onnx"):
        shape = seg.preprocess([photo])[0].shape
        result = openvino_ops(Path(model_file), seg, image_file, runs, warmup, labels, shape)
        return "openvino", result
    if kind == "litert":
        raise InputError(
            f"{model_file}: LiteRT files have no per-op profiler here; profile the .pt or "
            ".onnx it was exported from (same graph, torch / ONNX Runtime / OpenVINO)"
        )
    raise InputError(f"cannot profile engine '{kind}' without its model file")


def open_profiled(
    model: str | Path, *, engine: str = "auto", threads: int = 2
) -> tuple[Segmenter, Path | None]:
    """Open a model file or zoo name on ``engine`` (incl. 'fast'): the Segmenter and the file its
    runtime profiler reads (the fast graph's own file for 'fast'), None for an eager model."""
    seg = Segmenter.from_file(model, engine=engine, threads=threads)
    path = getattr(seg.engine, "path", None) or Path(str(model))
    return seg, path if path.is_file() else None


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
    seg, path = open_profiled(model, engine=engine, threads=threads)
    return profile_segmenter(seg, model_file=path, size=size, runs=runs, warmup=warmup)
