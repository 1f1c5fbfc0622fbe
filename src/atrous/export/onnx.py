"""ONNX export: dynamic H/W, simplified with onnxslim, the model card in ``metadata_props``.

The card travels inside the file (key ``atrous.card``), so ``load_engine("model.onnx")`` and the
Segmenter use the same pre/post-processing contract as the checkpoint it came from.
"""

from __future__ import annotations

import io
import logging
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import onnx
import onnxslim
import torch
from torch import nn

from atrous._atomic import atomic_path
from atrous.card import (
    CARD_KEY,
    ExportFacts,
    ModelCard,
    read_onnx_card,
    write_onnx_card,
)
from atrous.errors import ModelError

__all__ = [
    "CARD_KEY",
    "ArgmaxHead",
    "export_onnx",
    "read_onnx_card",
    "exported_card",
    "INPUT_NAME",
    "torch_to_onnx",
]

INPUT_NAME = "input"


class ArgmaxHead(nn.Module):
    """Wraps a segmentation network so it returns uint8 class labels (N, H, W) instead of logits.

    The DeepLab forward already upsamples to the input size, so this adds only the argmax.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x).argmax(1).to(torch.uint8)


def torch_to_onnx(
    net: nn.Module,
    sample: torch.Tensor,
    target: str | Path | io.BytesIO,
    *,
    opset: int = 17,
    input_names: Sequence[str] = (INPUT_NAME,),
    output_names: Sequence[str] = ("logits",),
    dynamic_axes: dict[str, dict[int, str]] | None = None,
    dynamo: bool | None = None,
    source: str | Path = "model",
    what: str = "ONNX export",
) -> onnx.ModelProto:
    """``torch.onnx.export`` as every atrous exporter calls it; returns the written graph.

    The TorchScript exporter below opset 18, the dynamo exporter from 18 (``dynamo`` forces
    one), without autograd (the trace keeps no activations); warnings and the exporter's
    logging are quieted; the weights the dynamo exporter writes to '<file>.data' are read back
    into the proto and the side file removed (save the proto to keep them); any failure is one
    ModelError line naming ``source``.
    """
    onnx_log = logging.getLogger("torch.onnx")
    level = onnx_log.level
    onnx_log.setLevel(logging.ERROR)  # the dynamo exporter logs missing torchvision ops
    side_data = None if isinstance(target, io.BytesIO) else Path(f"{target}.data")
    try:
        # no autograd graph: tracing with it kept every activation (Xception-71 traced at its
        # card's 2049 px: past 24 GB and killed; 1.3 instead of 3.2 GB at 513)
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                net,
                (sample,),
                target if isinstance(target, io.BytesIO) else str(target),
                dynamo=opset >= 18 if dynamo is None else dynamo,
                opset_version=opset,
                input_names=list(input_names),
                output_names=list(output_names),
                dynamic_axes=dynamic_axes,
                verbose=False,
            )
        if isinstance(target, io.BytesIO):
            return onnx.load_from_string(target.getvalue())
        return onnx.load(str(target))
    except Exception as exc:  # the exporters raise many types; report one line
        raise ModelError(f"{source}: {what} failed: {str(exc).splitlines()[0]}") from exc
    finally:
        onnx_log.setLevel(level)
        if side_data is not None:
            side_data.unlink(missing_ok=True)


def exported_card(card: ModelCard, fmt: str, with_argmax: bool, **facts: Any) -> ModelCard:
    """A copy of ``card`` describing the exported file: its output kind and export settings
    (``facts``: the fields of :class:`atrous.card.ExportFacts`)."""
    new = card.model_copy(deep=True)
    new.output = "labels" if with_argmax else card.output
    new.export = ExportFacts(format=fmt, **facts)
    return new


def export_onnx(
    model: nn.Module,
    card: ModelCard,
    path: str | Path,
    *,
    opset: int = 17,
    dynamic: bool = True,
    with_argmax: bool = False,
    simplify: bool = True,
    sample_size: tuple[int, int] | None = None,
) -> Path:
    """Export ``model`` to ONNX at ``path`` with the card in the metadata; return the path.

    Args:
        model: the network (put in eval mode); returns logits at the input size.
        card: its model card; stored (with ``output`` updated) under ``atrous.card``.
        opset: ONNX opset; below 18 uses the TorchScript exporter, 18+ the dynamo exporter.
        dynamic: batch, height and width are symbolic; otherwise fixed at ``sample_size``.
        with_argmax: put the argmax inside the graph and return uint8 labels (N, H, W).
        simplify: fold constants and fuse nodes with onnxslim.
        sample_size: (H, W) traced with; defaults to the card's size (or 513).
    """
    path = Path(path)
    model = model.eval()
    # a fresh wrapper is in training mode, and the exporter restores that mode on the whole tree
    net: nn.Module = (ArgmaxHead(model) if with_argmax else model).eval()
    size = sample_size or (card.preprocessing.size or 513,) * 2
    sample = torch.zeros(1, 3, *size)
    output_name = "labels" if with_argmax else "logits"
    axes = {0: "batch", 2: "height", 3: "width"} if dynamic else {}
    out_axes = ({0: "batch", 1: "height", 2: "width"} if with_argmax else axes) if dynamic else {}
    out_card = exported_card(card, "onnx", with_argmax, opset=opset, dynamic=dynamic)
    with atomic_path(path) as tmp:
        proto = torch_to_onnx(
            net,
            sample,
            tmp,
            opset=opset,
            input_names=[INPUT_NAME],
            output_names=[output_name],
            dynamic_axes={INPUT_NAME: axes, output_name: out_axes} if dynamic else None,
            source=path,
        )
        written = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
        if written != opset:
            raise ModelError(
                f"{path}: opset {opset} was asked for, but torch {torch.__version__} wrote opset "
                f"{written} instead; ask for one it can write (17, or 18 to 20)"
            )
        if simplify:
            proto = onnxslim.slim(proto)
        _fix_output_shape(proto, card.num_classes, with_argmax)
        write_onnx_card(proto, out_card)
        onnx.checker.check_model(proto)
        onnx.save(proto, str(tmp))
    return path


def _fix_output_shape(proto: onnx.ModelProto, num_classes: int, with_argmax: bool) -> None:
    """Write the class count into the output's channel dimension (Resize leaves it symbolic)."""
    if with_argmax:
        return
    dims = proto.graph.output[0].type.tensor_type.shape.dim
    if len(dims) == 4:
        dims[1].Clear()
        dims[1].dim_value = num_classes
