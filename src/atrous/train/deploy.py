"""The end of a training run: the fast graph beside ``best.pt`` (``train.fast_graph``), so
that ``atrous predict runs/.../best.pt`` runs the verified fast path with no export step."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path

from atrous.config import ExperimentConfig
from atrous.data import SegmentationDataset, build_dataset
from atrous.errors import AtrousError
from atrous.fastpath.deploy import CALIBRATION_IMAGES, CHECK_IMAGES, write_fast_graph

__all__ = ["deploy_fast_graph"]


def _first(dataset: SegmentationDataset | None, count: int) -> list:
    """The first ``count`` samples of ``dataset`` (none for no dataset)."""
    if dataset is None:
        return []
    return list(itertools.islice((dataset[i] for i in range(len(dataset))), count))


def deploy_fast_graph(
    config: ExperimentConfig,
    best: Path,
    val_data: SegmentationDataset | None,
    threads: int | None,
    say: Callable[[str], None],
) -> Path | None:
    """Write ``train.fast_graph`` (int8 or fp32; none: nothing) beside ``best``: int8
    calibrated on the first training images through the card's preprocessing, agreement with
    the float model measured on the first validation images and stored in the graph's card.
    A failure is reported and leaves the run as it is (the checkpoints are written already)."""
    precision = config.train.fast_graph
    if precision == "none":
        return None
    calib = _first(build_dataset(config.data, "train"), CALIBRATION_IMAGES)
    held = _first(val_data, CHECK_IMAGES)
    try:
        path, card = write_fast_graph(best, calib, precision, held_out=held, threads=threads)
    except (AtrousError, RuntimeError, OSError, ValueError) as exc:
        say(f"fast graph not written: {str(exc).splitlines()[0] if str(exc) else exc!r}")
        return None
    facts = card.fast_path
    say(
        f"{precision} fast graph {path} (agrees {facts.agreement:.1%} with the float model on "
        f"{facts.images_checked} held-out images)"
    )
    return path
