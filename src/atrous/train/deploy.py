"""The end of a training run: the fast graph beside ``best.pt`` (``train.fast_graph``), so
that ``atrous predict runs/.../best.pt`` runs the verified fast path with no export step."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path

from atrous.card import ModelCard
from atrous.config import ExperimentConfig
from atrous.data import SegmentationDataset, build_dataset
from atrous.errors import AtrousError
from atrous.evaluate import evaluate
from atrous.fastpath import label_stride_for
from atrous.fastpath.deploy import (
    CALIBRATION_IMAGES,
    CHECK_IMAGES,
    Scorer,
    fast_path_problem,
    fast_path_summary,
    write_fast_graph,
)
from atrous.segmenter import Segmenter

__all__ = ["deploy_fast_graph", "miou_scorer"]


def _first(dataset: SegmentationDataset | None, count: int) -> list:
    """The first ``count`` samples of ``dataset`` (none for no dataset)."""
    if dataset is None:
        return []
    return list(itertools.islice((dataset[i] for i in range(len(dataset))), count))


def miou_scorer(
    checkpoint: Path, dataset: SegmentationDataset, count: int, threads: int | None
) -> Scorer:
    """A scorer for :func:`write_fast_graph`: the float model's (PyTorch) and the graph's mIoU
    on the first ``count`` images of ``dataset``, with the one evaluator (dataset protocol:
    labels at their original size); the graph's labels at full resolution (stride 1), what
    the graph itself changes rather than the host's coarser labels."""

    def score(graph: Path, card: ModelCard) -> tuple[float, float]:
        del card  # the graph's own card (read with it) says how to run it
        plain = Segmenter.from_file(checkpoint, engine="torch", threads=threads)
        fast = Segmenter.from_file(graph, threads=threads).at_full_resolution()
        scored = [evaluate(s, dataset, limit=count, progress=False).miou for s in (plain, fast)]
        return scored[0], scored[1]

    return score


def deploy_fast_graph(
    config: ExperimentConfig,
    best: Path,
    val_data: SegmentationDataset | None,
    threads: int | None,
    say: Callable[[str], None],
) -> Path | None:
    """Write ``train.fast_graph`` (int8 or fp32; none: nothing) beside ``best``: int8
    calibrated on the first training images through the card's preprocessing; on the first
    validation images, its pixel agreement with the float model and both models' mIoU
    (what decides whether the graph is used) are stored in the graph's card.
    Models trained for inputs under 256 px label at full resolution (``label_stride_for``).
    A failure is reported and leaves the run as it is (the checkpoints are written already)."""
    precision = config.train.fast_graph
    if precision == "none":
        return None
    calib = _first(build_dataset(config.data, "train"), CALIBRATION_IMAGES)
    held = _first(val_data, CHECK_IMAGES)
    score = miou_scorer(best, val_data, len(held), threads) if held else None
    try:
        path, card = write_fast_graph(
            best, calib, precision, held_out=held, threads=threads, score=score,
            label_stride=label_stride_for(config.input_size),
        )  # fmt: skip
    except (AtrousError, RuntimeError, OSError, ValueError) as exc:
        say(f"fast graph not written: {str(exc).splitlines()[0] if str(exc) else exc!r}")
        return None
    facts = card.fast_path
    problem = fast_path_problem(facts)
    verdict = f"not used: {problem}" if problem else "used by predict/evaluate/serve"
    say(f"{precision} fast graph {path}: {fast_path_summary(facts)}; {verdict}")
    return path
