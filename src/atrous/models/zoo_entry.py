"""The zoo's entry type: a published configuration with its published figures."""

from __future__ import annotations

from dataclasses import dataclass, field

from atrous.config import ModelConfig, Preprocessing
from atrous.weights import Weights

__all__ = ["ZooEntry"]


@dataclass(frozen=True)
class ZooEntry:
    """A published configuration: architecture, input size, dataset, and published figures.

    ``params`` and ``macs`` are measured on the built model (``atrous.bench.cost``) at
    ``input_size``; a test recomputes them, so an entry cannot drift from its model.
    """

    name: str
    config: ModelConfig
    input_size: tuple[int, int]
    dataset: str
    source: str
    params: int
    macs: int
    published: dict[str, float | str] = field(default_factory=dict)
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    weights: tuple[Weights, ...] = ()  # published weights, by name (atrous.weights)
