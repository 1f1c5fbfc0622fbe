"""ReLU with a per-channel upper bound: what ReLU6 becomes after cross-layer equalisation.

Scaling channel *i* of a ReLU6 input by ``1/s`` keeps the network exact only if its clip moves to
``6/s``; ``min(relu(x), cap)`` with a (1, C, 1, 1) cap expresses that and exports to ONNX as
Relu + Min.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["CappedReLU"]


class CappedReLU(nn.Module):
    """``min(max(x, 0), cap[c])`` with one cap per channel."""

    def __init__(self, cap: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("cap", cap.reshape(1, -1, 1, 1).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.minimum(F.relu(x), self.cap)
