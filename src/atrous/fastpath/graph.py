"""The fast graph exported to ONNX: uint8 pixels in (dynamic batch, height, width), logits at
the network's resolution out, the fast graph's card in the metadata."""

from __future__ import annotations

import copy
from pathlib import Path

import onnx
import torch
from torch import nn

from atrous._atomic import atomic_path
from atrous.card import ModelCard, write_onnx_card
from atrous.export.onnx import torch_to_onnx
from atrous.fastpath.modules import (
    DEFAULT_LABEL_STRIDE,
    INPUT_NAME,
    OUTPUT_NAME,
    FastGraph,
    fast_card,
)
from atrous.quantize.channel_padding import CHANNEL_MULTIPLE, pad_channels

__all__ = ["FAST_GRAPH_VERSION", "export_fast_onnx"]

FAST_GRAPH_VERSION = 4  # bump when the graph export changes what a cached graph computes


def export_fast_onnx(
    model: nn.Module,
    card: ModelCard,
    path: str | Path,
    *,
    label_stride: int = DEFAULT_LABEL_STRIDE,
    opset: int = 17,
    sample_size: tuple[int, int] = (129, 129),
    channel_multiple: int = CHANNEL_MULTIPLE,
) -> Path:
    """Write the fast graph of ``model`` to ``path`` (dynamic batch/height/width) with its card.

    Internal channel groups are padded with zero channels to multiples of ``channel_multiple``
    (1: as they are), which the CPU kernels run faster; the logits are the same. ``model`` is
    not modified.
    """
    path = Path(path)
    written = fast_card(card, label_stride, channel_multiple=channel_multiple)
    if channel_multiple > 1:
        model = copy.deepcopy(model)
        pad_channels(model, channel_multiple)
    graph = FastGraph(model, card).eval()
    m = written.preprocessing.pad_multiple  # a multiple of the label stride
    h, w = (-(-s // m) * m for s in sample_size)
    sample = torch.zeros(1, 3, h, w, dtype=torch.uint8)
    with atomic_path(path) as tmp:
        proto = torch_to_onnx(
            graph,
            sample,
            tmp,
            opset=opset,
            dynamo=False,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={
                INPUT_NAME: {0: "batch", 2: "height", 3: "width"},
                OUTPUT_NAME: {0: "batch", 2: "logit_height", 3: "logit_width"},
            },
            source=path,
            what="fast-path export",
        )
        write_onnx_card(proto, written)
        onnx.save(proto, str(tmp))
    return path
