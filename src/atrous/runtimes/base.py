"""The Engine protocol: one interface for every runtime (PyTorch, ONNX Runtime, OpenVINO, LiteRT).

Everything downstream (segmenter, evaluator, benchmark) takes an Engine, so every format is
measured and evaluated by the same code.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np

__all__ = ["Engine"]


@runtime_checkable
class Engine(Protocol):
    """A loaded model that maps a preprocessed batch to logits, labels or probabilities.

    ``run`` takes a float32 batch in the card's layout (NCHW unless the card says NHWC) and
    returns a NumPy array: logits (N, C, H, W), labels (N, H, W) or probabilities (N, 1, H, W).
    """

    name: str
    threads: int

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Run the network on one preprocessed batch."""
        ...

    def describe(self) -> dict[str, Any]:
        """Runtime name, version, threads and model file, for reports."""
        ...
