"""ONNX export: dynamic H/W, simplified with onnxslim, the model card in ``metadata_props``.

The card travels inside the file (key ``atrous.card``), so ``load_engine("model.onnx")`` and the
Segmenter use the same pre/post-processing contract as the checkpoint it came from.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import onnx
import torch
from torch import nn

from atrous._atomic import atomic_path
from atrous.card import ModelCard, card_from_json
from atrous.errors import ModelError
from atrous.runtimes import CARD_KEY

__all__ = [
    "CARD_KEY",
    "ArgmaxHead",
    "export_onnx",
    "read_onnx_card",
    "proto_card",
    "exported_card",
    "INPUT_NAME",
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


def exported_card(card: ModelCard, fmt: str, with_argmax: bool, **notes: object) -> ModelCard:
    """A copy of ``card`` describing the exported file: its output kind and export settings."""
    new = card.model_copy(deep=True)
    new.output = "labels" if with_argmax else card.output
    new.provenance.notes = {**new.provenance.notes, "export": {"format": fmt, **notes}}
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
    onnx_log = logging.getLogger("torch.onnx")
    level = onnx_log.level
    onnx_log.setLevel(logging.ERROR)  # the dynamo exporter logs missing torchvision ops
    with atomic_path(path) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # the dynamo exporter puts the weights in '<file>.data' beside the file; they are read
        # back into the proto below and saved inline, so that side file must not outlive this
        side_data = Path(f"{tmp}.data")
        try:
            torch.onnx.export(
                net,
                (sample,),
                str(tmp),
                dynamo=opset >= 18,
                opset_version=opset,
                input_names=[INPUT_NAME],
                output_names=[output_name],
                dynamic_axes={INPUT_NAME: axes, output_name: out_axes} if dynamic else None,
                verbose=False,
            )
            proto = onnx.load(str(tmp))
        except Exception as exc:  # the exporters raise many types; report one line
            raise ModelError(f"{path}: ONNX export failed: {str(exc).splitlines()[0]}") from exc
        finally:
            onnx_log.setLevel(level)
            side_data.unlink(missing_ok=True)
        written = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
        if written != opset:
            raise ModelError(
                f"{path}: opset {opset} was asked for, but torch {torch.__version__} wrote opset "
                f"{written} instead; ask for one it can write (17, or 18 to 20)"
            )
        if simplify:
            import onnxslim

            proto = onnxslim.slim(proto)
        _fix_output_shape(proto, card.num_classes, with_argmax)
        set_metadata(proto, {CARD_KEY: out_card.to_json()})
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


def set_metadata(proto: onnx.ModelProto, items: dict[str, str]) -> None:
    """Set (replace) string entries in an ONNX model's ``metadata_props``."""
    keep = [p for p in proto.metadata_props if p.key not in items]
    del proto.metadata_props[:]
    proto.metadata_props.extend(keep)
    for key, value in items.items():
        proto.metadata_props.add(key=key, value=value)


def read_onnx_card(path: str | Path) -> ModelCard | None:
    """The card stored in an ONNX file's metadata, or None when it has none."""
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise ModelError(f"{path}: not a readable ONNX file ({type(exc).__name__})") from None
    return proto_card(proto, str(path))


def proto_card(proto: onnx.ModelProto, source: str = "model") -> ModelCard | None:
    """The card in a loaded ONNX model's metadata, or None when it has none."""
    for prop in proto.metadata_props:
        if prop.key == CARD_KEY:
            return card_from_json(prop.value, source)
    return None
