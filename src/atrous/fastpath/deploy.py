"""The deploy-ready default: a verified fast graph beside a checkpoint, and the fastest path
for a checkpoint on this machine.

``atrous train`` ends with :func:`write_fast_graph`: ``NAME.fast.xml`` (int8, OpenVINO) or
``NAME.fast.onnx`` (int8 QDQ or fp32, ONNX Runtime) beside ``NAME.pt``, its card recording
the SHA-256 of the checkpoint it was built from, its pixel agreement with the float model on
held-out images and, when they are labelled (training's validation split), the float model's and
the graph's mIoU on them. :func:`open_fastest` (``--engine auto`` or ``fast`` on a checkpoint)
runs that graph when it is verified (:func:`verified_graph`: same checkpoint, and at most
``MAX_MIOU_DROP`` mIoU lost against float, or, with no labelled score, pixel agreement at least
``MIN_AGREEMENT``), else the fp32 fast graph built once and cached by content hash under
``$ATROUS_CACHE/fast``, else the plain PyTorch engine; it says which.

Why mIoU rather than pixel agreement: int8 flips boundary pixels both ways (a short demo run
agreed on 97.0% of pixels), which agreement counts as errors although the masks score the same;
the accuracy that matters is the labelled score (the issue's criterion: within 0.5 points).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import cv2
import onnx

from atrous.card import FastPathFacts, ModelCard, onnx_card, read_card, write_onnx_card
from atrous.errors import ModelError
from atrous.export._staging import companions, publish, staged_path
from atrous.fastpath.build import export_fast
from atrous.fastpath.cache import fast_graph_engine
from atrous.fastpath.modules import DEFAULT_LABEL_STRIDE
from atrous.runtimes import Engine, TorchEngine, load_exported
from atrous.sources import load_source

__all__ = [
    "MAX_MIOU_DROP",
    "MIN_AGREEMENT",
    "FastPath",
    "checkpoint_sha256",
    "fast_graph_paths",
    "fast_path_problem",
    "fast_path_summary",
    "graph_status",
    "open_fastest",
    "verified_graph",
    "write_fast_graph",
]

MAX_MIOU_DROP = 0.005  # mIoU (0-1) a graph may lose against float on labelled held-out images
MIN_AGREEMENT = 0.99  # pixel agreement with float a graph needs when no labelled score exists
CALIBRATION_IMAGES = 32
CHECK_IMAGES = 32  # held-out images scored (a 192 px demo model: about a second each side)

# scores a staged graph: (its path, its card) -> (float mIoU, graph mIoU) on the held-out images
Scorer = Callable[[Path, ModelCard], tuple[float, float]]


@dataclass
class FastPath:
    """What :func:`open_fastest` opened: the engine, its card, a short name of the path
    ('fast-int8', 'fast-fp32', 'torch') and a one-line description of it."""

    engine: Engine
    card: ModelCard
    name: str
    description: str


def checkpoint_sha256(path: str | Path) -> str:
    """SHA-256 of a checkpoint file's bytes (read in 1 MiB chunks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fast_graph_paths(checkpoint: str | Path) -> list[Path]:
    """Where a fast graph of ``checkpoint`` is looked for, preferred first:
    ``NAME.fast.xml`` (OpenVINO int8), ``NAME.fast.onnx`` (ONNX Runtime)."""
    path = Path(checkpoint)
    return [path.with_name(f"{path.stem}.fast{suffix}") for suffix in (".xml", ".onnx")]


def _int8_target(checkpoint: Path) -> Path:
    """The file an int8 graph is written as: OpenVINO IR when OpenVINO and NNCF are installed
    (the faster build measured), else ONNX Runtime QDQ."""
    has_openvino = find_spec("openvino") is not None and find_spec("nncf") is not None
    return fast_graph_paths(checkpoint)[0 if has_openvino else 1]


def _with_facts(staged: Path, out: Path, facts: FastPathFacts) -> None:
    """Copy the graph at ``staged`` to ``out`` (a fresh staging path) with its card's
    fast-path section replaced by ``facts``."""
    if staged.suffix == ".onnx":
        proto = onnx.load(str(staged))
        card = onnx_card(proto, str(staged))
        write_onnx_card(proto, card.model_copy(update={"fast_path": facts}))
        onnx.save(proto, str(out))
        return
    import openvino as ov

    from atrous.card import card_from_json, openvino_card_json, write_openvino_card

    model = ov.Core().read_model(str(staged))
    card = card_from_json(openvino_card_json(model) or "{}", str(staged))
    write_openvino_card(model, card.model_copy(update={"fast_path": facts}))
    ov.save_model(model, str(out), compress_to_fp16=False)


def write_fast_graph(
    checkpoint: str | Path,
    calib_images: Sequence[Any],
    precision: str = "int8",
    *,
    held_out: Sequence[Any] = (),
    threads: int | None = None,
    score: Scorer | None = None,
    label_stride: int = DEFAULT_LABEL_STRIDE,
) -> tuple[Path, ModelCard]:
    """Write the fast graph of ``checkpoint`` beside it (``NAME.fast.xml`` / ``.onnx``),
    atomically (its companion .bin first), with the checkpoint's SHA-256 and the graph's
    pixel agreement with the float model on ``held_out`` images (synthetic ones when none),
    labels at full resolution on both sides, in its card. int8 is calibrated on
    ``calib_images`` (dataset samples or RGB arrays, through the card's preprocessing); fp32
    ignores them. ``score``, given the written (staged) graph and its card, returns the float
    model's and the graph's mIoU on the labelled ``held_out`` images; both are recorded.
    ``label_stride``: the host's label resolution the graph's card asks for.
    Returns the path and the written card."""
    if precision not in ("int8", "fp32"):
        raise ModelError(f"fast graph precision must be int8 or fp32, got '{precision}'")
    checkpoint = Path(checkpoint)
    sha = checkpoint_sha256(checkpoint)
    calib = list(calib_images)[:CALIBRATION_IMAGES] if precision == "int8" else []
    held = list(held_out)[:CHECK_IMAGES]
    target = _int8_target(checkpoint) if precision == "int8" else fast_graph_paths(checkpoint)[1]
    with staged_path(target) as first, staged_path(target) as second:
        result = export_fast(
            checkpoint,
            first,
            precision=precision,
            label_stride=label_stride,
            calibration=calib + held,
            num=len(calib),
            check=CHECK_IMAGES,
            threads=threads,
            check_label_stride=1,  # what the graph changes, not the host's 1/2 labels
        )
        facts = result.card.fast_path or FastPathFacts(label_stride=DEFAULT_LABEL_STRIDE)
        facts = facts.model_copy(
            update={
                "source_sha256": sha,
                "agreement": round(result.agreement, 6),
                "images_checked": result.images_checked,
            }
        )
        if score is not None:
            float_miou, fast_miou = score(first, result.card)
            facts = facts.model_copy(
                update={"float_miou": round(float_miou, 6), "fast_miou": round(fast_miou, 6)}
            )
        _with_facts(first, second, facts)
        publish(second, target)
    for stale in fast_graph_paths(checkpoint):  # one graph beside a checkpoint, never two
        if stale != target:
            for part in companions(stale):
                part.unlink(missing_ok=True)
    return target, result.card.model_copy(update={"fast_path": facts})


def _graph_problem(path: Path, sha: str) -> str:
    """Why the graph at ``path`` may not stand in for the checkpoint whose SHA-256 is ``sha``
    ('' when it may)."""
    try:
        card = read_card(path)
    except (ModelError, RuntimeError, ImportError) as exc:
        return f"{path.name} unreadable ({str(exc).splitlines()[0][:80] if str(exc) else exc!r})"
    facts = card.fast_path if card is not None else None
    if facts is None or facts.source_sha256 != sha:
        return f"{path.name} was built from another checkpoint"
    problem = fast_path_problem(facts)
    return f"{path.name} {problem}" if problem else ""


def _miou_drop(facts: FastPathFacts) -> float | None:
    """mIoU the graph loses against the float model (0-1; negative: it gains), or None when
    no labelled score is recorded."""
    if facts.float_miou is None or facts.fast_miou is None:
        return None
    return facts.float_miou - facts.fast_miou


def fast_path_problem(facts: FastPathFacts) -> str:
    """Why a graph with these recorded facts is not accurate enough to stand in for its float
    model ('' when it is): more than ``MAX_MIOU_DROP`` mIoU lost on labelled held-out images,
    or, with no labelled score, pixel agreement below ``MIN_AGREEMENT``. (The checkpoint's
    SHA-256 is checked separately.)"""
    drop = _miou_drop(facts)
    if drop is not None:
        if drop > MAX_MIOU_DROP:
            return (
                f"loses {100 * drop:.2f} mIoU points against the float model on "
                f"{facts.images_checked} held-out images, more than {100 * MAX_MIOU_DROP:g}"
            )
        return ""
    if facts.agreement is None or facts.agreement < MIN_AGREEMENT:
        agreed = "unmeasured" if facts.agreement is None else f"{facts.agreement:.1%}"
        return f"agrees {agreed} with the float model, below {MIN_AGREEMENT:.0%}"
    return ""


def fast_path_summary(facts: FastPathFacts) -> str:
    """One line of what was measured: '-0.20 mIoU points vs float (0.8310 -> 0.8290) on 32
    held-out images, 97.0% of pixels agree' (without mIoU: the agreement alone)."""
    agreed = "unmeasured" if facts.agreement is None else f"{facts.agreement:.1%}"
    drop = _miou_drop(facts)
    if drop is None:
        return f"agrees {agreed} with the float model on {facts.images_checked} held-out images"
    return (
        f"{-100 * drop:+.2f} mIoU points vs float ({facts.float_miou:.4f} -> "
        f"{facts.fast_miou:.4f}) on {facts.images_checked} held-out images, "
        f"{agreed} of pixels agree"
    )


def graph_status(checkpoint: str | Path) -> tuple[Path | None, str]:
    """The verified fast graph beside ``checkpoint`` (or None) and why: the reason a graph
    found there is not used, or '' when none is there."""
    found = [p for p in fast_graph_paths(checkpoint) if p.is_file()]
    if not found:
        return None, ""
    sha = checkpoint_sha256(checkpoint)
    reasons = []
    for path in found:
        problem = _graph_problem(path, sha)
        if not problem:
            return path, ""
        reasons.append(problem)
    return None, "; ".join(reasons)


def verified_graph(checkpoint: str | Path) -> Path | None:
    """The fast graph beside ``checkpoint`` if its card names this checkpoint's SHA-256 and
    its recorded accuracy passes (:func:`fast_path_problem`); else None."""
    return graph_status(checkpoint)[0]


def _open_graph(graph: Path, threads: int | None) -> FastPath:
    """The verified fast graph at ``graph`` on its runtime."""
    runtime = "openvino" if graph.suffix == ".xml" else "onnxruntime"
    engine, card = load_exported(graph, runtime, threads)
    cv2.setNumThreads(1)  # host pre/postprocessing must not compete with the engine
    facts = card.fast_path or FastPathFacts()
    return FastPath(
        engine,
        card,
        f"fast-{facts.precision}",
        f"{facts.precision} fast graph {graph} on {engine.name} "
        f"(verified: {fast_path_summary(facts)})",
    )


def open_fastest(checkpoint: str | Path, threads: int | None = None) -> FastPath:
    """The fastest verified path for ``checkpoint`` on this machine: the verified graph
    beside it, else the fp32 fast graph (built once, cached by content hash under
    ``$ATROUS_CACHE/fast``), else the plain PyTorch engine."""
    graph, why_not = graph_status(checkpoint)
    if graph is not None:
        try:
            return _open_graph(graph, threads)
        except (ModelError, RuntimeError, ImportError) as exc:  # e.g. a runtime not installed
            why_not = f"{graph.name} did not open ({str(exc).splitlines()[0][:80]})"
    skipped = f"; not used: {why_not}" if why_not else ""
    net, card = load_source(checkpoint)
    if find_spec("onnxruntime") is not None and card.output == "logits":
        try:
            engine, fast = fast_graph_engine((net, card), threads=threads)
        except ModelError as exc:
            skipped += f"; fp32 fast graph failed: {exc}"
        else:
            return FastPath(
                engine,
                fast,
                "fast-fp32",
                f"fp32 fast graph, cached under $ATROUS_CACHE/fast, on {engine.name}{skipped}",
            )
    engine = TorchEngine(net, threads, source=str(checkpoint))
    return FastPath(engine, card, "torch", f"plain engine {engine.name}{skipped}")
