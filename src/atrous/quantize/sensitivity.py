"""Per-layer (or per-block) int8 sensitivity and automatic mixed precision.

The sweep quantizes the whole network, then for each layer group keeps just that group in float
and measures how much of the accuracy comes back on held-out data. Groups are ranked by that
gain; ``auto_mixed`` then keeps the fewest top-ranked groups in float (ONNX Runtime's
``nodes_to_exclude``) that bring the drop from float under the budget. Calibration runs once
(cached ranges), so each step costs one graph rewrite and one evaluation.
"""

from __future__ import annotations

import copy
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import onnxruntime as ort

from atrous._atomic import atomic_path, scratch_directory
from atrous.errors import ModelError
from atrous.quantize.ptq import (
    calibration_batches,
    copy_metadata,
    preprocess_for_quantization,
    quantizable_nodes,
    quantize_onnx,
)

__all__ = [
    "Scorer",
    "GroupSensitivity",
    "MixedResult",
    "layer_groups",
    "agreement_scorer",
    "sensitivity_sweep",
    "choose_float_groups",
    "auto_mixed",
]

Scorer = Callable[[Path], float]
"""Scores a model file on held-out data, in points (mIoU or agreement, %), higher is better."""


@dataclass
class GroupSensitivity:
    """One layer group: its nodes and the score when only it stays in float."""

    name: str
    nodes: list[str]
    score: float
    gain: float


@dataclass
class MixedResult:
    """Outcome of the sweep and selection: scores, ranked table, groups kept in float."""

    float_score: float
    int8_score: float
    mixed_score: float
    table: list[GroupSensitivity]
    float_groups: list[str] = field(default_factory=list)
    float_nodes: list[str] = field(default_factory=list)
    path: Path | None = None
    source: Path | None = None
    workdir: Path | None = None
    batches: list[np.ndarray] = field(default_factory=list, repr=False)
    quant: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def int8_drop(self) -> float:
        return self.float_score - self.int8_score

    @property
    def mixed_drop(self) -> float:
        return self.float_score - self.mixed_score


def _group_of(node: str, granularity: str) -> str:
    """'/backbone/features.3/conv/conv.0/Conv' -> 'backbone/features.3' (block) or full (layer)."""
    parts = [p for p in node.split("/") if p]
    if granularity == "layer" or len(parts) < 2:
        return "/".join(parts[:-1]) or node
    depth = 2 if parts[0] in ("backbone", "head", "decoder") else 1
    return "/".join(parts[:depth])


def layer_groups(model_path: str | Path, granularity: str = "block") -> dict[str, list[str]]:
    """Quantizable nodes grouped per block (backbone unit, head part) or per layer, graph order."""
    groups: dict[str, list[str]] = {}
    for node in quantizable_nodes(model_path):
        groups.setdefault(_group_of(node, granularity), []).append(node)
    return groups


def agreement_scorer(
    reference: str | Path, batches: Sequence[np.ndarray], threads: int = 2
) -> Scorer:
    """Label-free score: % of pixels whose argmax matches the ``reference`` model's."""
    ref = [out.argmax(1) for out in _run_onnx(reference, batches, threads)]

    def score(path: Path) -> float:
        outs = _run_onnx(path, batches, threads)
        return 100.0 * float(
            np.mean([(o.argmax(1) == r).mean() for o, r in zip(outs, ref, strict=True)])
        )

    return score


def _run_onnx(path: str | Path, batches: Sequence[np.ndarray], threads: int) -> list[np.ndarray]:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return [session.run(None, {name: b})[0] for b in batches]


def sensitivity_sweep(
    model_path: str | Path,
    calib: Any,
    score: Scorer,
    workdir: str | Path,
    *,
    num: int = 100,
    granularity: Literal["block", "layer"] = "block",
    progress: Callable[[str], None] | None = None,
    **quant: Any,
) -> MixedResult:
    """Score float, full int8, and int8 with each layer group alone kept in float; rank groups.

    ``workdir`` keeps the prepared model and the calibration ranges for
    :func:`choose_float_groups`; ``quant`` passes through to :func:`quantize_onnx`.
    """
    work = Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    prepared = preprocess_for_quantization(Path(model_path), work / "prepared.onnx")
    batches = calibration_batches(calib, quant.pop("card", None), num, card_source=model_path)
    groups = layer_groups(prepared, granularity)
    if not groups:
        raise ModelError(f"{model_path}: no quantizable layers (Conv/MatMul/Gemm)")
    result = MixedResult(0.0, 0.0, 0.0, [], source=Path(model_path), workdir=work)
    result.batches, result.quant = batches, quant
    result.float_score = score(prepared)
    result.int8_score = result.mixed_score = score(_quantized(result, [], "int8"))
    for i, (name, nodes) in enumerate(groups.items()):
        if progress:
            progress(f"sensitivity {i + 1}/{len(groups)}: {name}")
        s = score(_quantized(result, nodes, "probe"))
        result.table.append(GroupSensitivity(name, nodes, s, s - result.int8_score))
    result.table.sort(key=lambda g: -g.gain)
    return result


def _quantized(result: MixedResult, exclude: Sequence[str], name: str) -> Path:
    """Quantize the sweep's prepared model with ``exclude`` in float, reusing its ranges."""
    work = result.workdir
    out = work / f"{name}.onnx"
    quantize_onnx(
        work / "prepared.onnx",
        result.batches,
        out,
        nodes_to_exclude=exclude,
        calibration_cache=work / "ranges.json",
        preprocess=False,
        **result.quant,
    )
    return out


def choose_float_groups(
    result: MixedResult,
    out: str | Path,
    score: Scorer,
    *,
    max_drop: float = 0.5,
    max_float_groups: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> MixedResult:
    """Keep the fewest top-ranked groups in float so float - mixed <= ``max_drop``; write ``out``.

    Groups are added in rank order (largest gain first) until the budget holds; the model
    written is the first that meets it (or the best tried, if none does).
    """
    best_path, best_score, chosen = result.workdir / "int8.onnx", result.int8_score, 0
    limit = len(result.table) if max_float_groups is None else max_float_groups
    k = 0
    while result.float_score - best_score > max_drop and k < limit:
        k += 1
        candidate = _quantized(result, [n for g in result.table[:k] for n in g.nodes], f"mixed{k}")
        s = score(candidate)
        if progress:
            progress(f"{k} group(s) in float: score {s:.2f}")
        if s > best_score:
            best_path, best_score, chosen = candidate, s, k
    chosen_result = copy.copy(result)
    chosen_result.mixed_score = best_score
    chosen_result.float_groups = [g.name for g in result.table[:chosen]]
    chosen_result.float_nodes = [n for g in result.table[:chosen] for n in g.nodes]
    out = Path(out)
    staged = result.workdir / "final.onnx"
    shutil.copyfile(best_path, staged)
    notes = {k: v for k, v in result.quant.items() if isinstance(v, str | int | float)}
    notes.update(engine="onnxruntime", float_groups=chosen_result.float_groups)
    copy_metadata(result.source, staged, {"quantization": notes})
    with atomic_path(out) as tmp:
        shutil.move(str(staged), tmp)
    chosen_result.path = out
    return chosen_result


def auto_mixed(
    model_path: str | Path,
    calib: Any,
    out: str | Path,
    score: Scorer,
    *,
    max_drop: float = 0.5,
    num: int = 100,
    granularity: Literal["block", "layer"] = "block",
    max_float_groups: int | None = None,
    progress: Callable[[str], None] | None = None,
    **quant: Any,
) -> MixedResult:
    """Sensitivity sweep, then :func:`choose_float_groups`: the whole automatic mixed precision."""
    with scratch_directory("mixed") as tmp:
        result = sensitivity_sweep(
            model_path,
            calib,
            score,
            tmp,
            num=num,
            granularity=granularity,
            progress=progress,
            **quant,
        )
        return choose_float_groups(
            result,
            out,
            score,
            max_drop=max_drop,
            max_float_groups=max_float_groups,
            progress=progress,
        )
