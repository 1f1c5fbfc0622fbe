"""The fast graph's torch modules and card: uint8 pixels -> normalise -> DeepLab -> logits.

See :mod:`atrous.fastpath` for what the fast path removes from the plain one.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from atrous.card import FastPathFacts, ModelCard, Normalisation
from atrous.errors import ModelError
from atrous.models.aspp import ASPP, PooledBiasASPP
from atrous.quantize.channel_padding import CHANNEL_MULTIPLE

__all__ = [
    "DEFAULT_LABEL_STRIDE",
    "FULL_LABELS_BELOW",
    "FastGraph",
    "INPUT_NAME",
    "LABEL_STRIDES",
    "Normalize",
    "OUTPUT_NAME",
    "fast_card",
    "label_stride_for",
]

LABEL_STRIDES = (1, 2, 4, 8)
# labels at 1/2: a quarter of the upsample+argmax work for ~0.2 mIoU on ideal OS16 logits
# (1/4 costs ~0.8, over the 0.5-point budget); see benchmarks/results/fast_path.md
DEFAULT_LABEL_STRIDE = 2
# below this input size (shorter side, px) a fast graph written by training labels at full
# resolution: LR-ASPP at 128 px lost 0.54 mIoU points with 1/2 labels against 0.21 at full
# resolution (benchmarks/results/zoo_accuracy.md), for a label step of well under 0.1 ms
FULL_LABELS_BELOW = 256
INPUT_NAME = "pixels"
OUTPUT_NAME = "logits"


def label_stride_for(input_size: int | None) -> int:
    """The label stride for a model that runs at ``input_size`` px (None: unknown): the default
    1/2 labels, or full-resolution ones below ``FULL_LABELS_BELOW`` px."""
    if input_size is not None and input_size < FULL_LABELS_BELOW:
        return 1
    return DEFAULT_LABEL_STRIDE


class Normalize(nn.Module):
    """uint8 planar RGB pixels (N, 3, H, W) -> float in the card's channel order, mean and std."""

    def __init__(self, card: ModelCard) -> None:
        super().__init__()
        pre = card.preprocessing
        std = 255.0 * np.asarray(pre.std, np.float32)
        mean = 255.0 * np.asarray(pre.mean, np.float32)
        self.order = [2, 1, 0] if pre.channel_order == "BGR" else [0, 1, 2]
        shift = -mean / std  # mean and std are in the network's channel order
        self.register_buffer("scale", torch.from_numpy(1.0 / std).reshape(1, 3, 1, 1))
        self.register_buffer("shift", torch.from_numpy(shift).reshape(1, 3, 1, 1))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = pixels
        if self.order != [0, 1, 2]:
            x = x[:, self.order]
        # a per-channel 1x1 convolution rather than broadcast Mul + Add: ONNX Runtime runs it
        # with its blocked conv kernels, where the broadcast pair can cost 10x more (seen
        # around the int8 graph's first QuantizeLinear)
        weight = self.scale.reshape(3, 1, 1, 1)
        return F.conv2d(x.float(), weight, self.shift.reshape(3), groups=3)


class FastGraph(nn.Module):
    """uint8 planar RGB pixels -> normalise -> DeepLab -> logits at the network's resolution.

    The upsample and argmax run on the host (``atrous.upsample.sparse_upsample_argmax``), which
    interpolates the class scores only near class boundaries, at the label stride the card
    records (``fast_card``). An ASPP head runs as ``PooledBiasASPP`` (the same function).

    Args:
        model: a DeepLab (backbone, head, optional decoder, classifier).
        card: its card; mean/std and channel order move into the graph.
    """

    def __init__(self, model: nn.Module, card: ModelCard) -> None:
        super().__init__()
        upsampling = getattr(getattr(model, "config", None), "upsampling", "bilinear")
        if upsampling != "bilinear":  # the host's sparse upsample is bilinear
            raise ModelError(
                f"the fast path upsamples bilinearly; upsampling='{upsampling}' exports with "
                "`atrous export` instead"
            )
        self.model = model.eval()
        self.normalize = Normalize(card)
        # the image-pooling branch as a per-image bias of the projection: no broadcast map,
        # no concat (the int8 MobileNetV2 head took 0.96 instead of 1.72 ms at 513x513)
        head = model.head
        self.head = PooledBiasASPP(head) if isinstance(head, ASPP) else head

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = self.normalize(pixels)
        m = self.model
        return m.logits(*m.backbone(x), head=self.head)


def fast_card(
    card: ModelCard,
    label_stride: int,
    precision: str = "fp32",
    channel_multiple: int = CHANNEL_MULTIPLE,
) -> ModelCard:
    """The card of a fast graph: raw uint8 RGB planar input, low-resolution logits out, the
    settings (label stride, precision, channel padding, original normalisation) in its
    ``fast_path`` section.

    Identity normalisation (mean 0, std 1/255) tells the Segmenter to pass pixels through; the
    padding value becomes the RGB pixel closest to the original one (for a padding of 0, the
    mean colour).
    """
    if label_stride not in LABEL_STRIDES:
        raise ModelError(f"label_stride must be one of {LABEL_STRIDES}, got {label_stride}")
    pre = card.preprocessing
    mean, std = 255.0 * np.asarray(pre.mean), 255.0 * np.asarray(pre.std)
    colour = np.clip(np.rint(mean + std * np.asarray(pre.pad_value)), 0, 255)
    if pre.channel_order == "BGR":
        colour = colour[::-1]  # the card's values are in the network's channel order
    pad_pixel = tuple(float(c) for c in colour)
    new = card.model_copy(deep=True)
    new.preprocessing = pre.model_copy(
        update={
            "mean": (0.0, 0.0, 0.0),
            "std": (1 / 255, 1 / 255, 1 / 255),
            "channel_order": "RGB",
            "layout": "NCHW",
            "pad_value": pad_pixel,
            "pad_multiple": int(np.lcm(pre.pad_multiple, label_stride)),
        }
    )
    new.output = "logits"  # at the network's resolution; the Segmenter upsamples sparsely
    new.fast_path = FastPathFacts(
        label_stride=label_stride,
        precision=precision,
        channel_multiple=channel_multiple,
        normalisation=Normalisation(
            mean=list(pre.mean), std=list(pre.std), channel_order=pre.channel_order
        ),
    )
    return new
