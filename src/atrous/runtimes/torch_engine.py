"""PyTorch eager engine: the reference every exported format is checked against."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = ["TorchEngine", "default_threads"]


def default_threads() -> int:
    """Threads used when none are asked for: the cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


class TorchEngine:
    """Runs a ``nn.Module`` in eval mode under ``torch.inference_mode``.

    Args:
        model: the network; put in eval mode.
        threads: intra-op threads (``torch.set_num_threads``); None keeps all cores.
        channels_last: run in channels-last memory format (faster convolutions on CPU).
    """

    name = "torch"

    def __init__(
        self,
        model: nn.Module,
        threads: int | None = None,
        channels_last: bool = False,
        source: str | None = None,
    ) -> None:
        self.model = model.eval()
        self.threads = threads or default_threads()
        self.channels_last = channels_last
        self.source = source
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Logits (N, C, H, W) as float32 for a float32 NCHW batch."""
        torch.set_num_threads(self.threads)
        x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            out = self.model(x)
        return out.float().contiguous().numpy()

    def describe(self) -> dict[str, Any]:
        """Runtime, version, threads and source file."""
        return {
            "engine": self.name,
            "version": torch.__version__,
            "threads": self.threads,
            "channels_last": self.channels_last,
            "model": self.source,
        }
