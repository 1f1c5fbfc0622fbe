"""The Lite R-ASPP head (Howard et al., 2019, "Searching for MobileNetV3"; torchvision
``LRASPPHead``): a 1x1 branch on the high features gated by their sigmoid-pooled summary,
classified and added to a classifier of the low (stride-8) features.

The DeepLab assembly keeps the high branch's classifier as its ``classifier``, so
``classifier.weight`` still names the number of classes for every head.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["LRASPP"]


class LRASPP(nn.Module):
    """LR-ASPP head without its high-branch classifier (passed to :meth:`forward`).

    Args:
        low_channels: channels of the low (stride-8) features.
        high_channels: channels of the backbone's output features.
        num_classes: classes of the low-branch classifier.
        channels: inter channels of the high branch (128 in the paper and torchvision).
    """

    def __init__(
        self, low_channels: int, high_channels: int, num_classes: int, channels: int = 128
    ) -> None:
        super().__init__()
        self.cbr = nn.Sequential(
            nn.Conv2d(high_channels, channels, 1, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
        )
        self.scale = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Conv2d(high_channels, channels, 1, bias=False), nn.Sigmoid()
        )
        self.low_classifier = nn.Conv2d(low_channels, num_classes, 1)
        self.out_channels = channels

    def forward(self, high: torch.Tensor, low: torch.Tensor, classifier: nn.Module) -> torch.Tensor:
        """Logits at the low features' resolution: low_classifier(low) + classifier(gated high
        features, bilinearly upsampled to it)."""
        x = self.cbr(high) * self.scale(high)
        x = F.interpolate(x, size=low.shape[-2:], mode="bilinear", align_corners=False)
        return self.low_classifier(low) + classifier(x)
