"""Per-layer attribution for the profiler: which block (backbone stage by output stride, head,
decoder, classifier, upsample, argmax, layout) an op or node belongs to, read from the module
path the exporter keeps in node names, so every runtime's table reads the same."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from atrous.card import ModelCard
from atrous.models import build_model

__all__ = ["OpTime", "block_labels", "block_of", "labels_for", "with_overhead"]


@dataclass
class OpTime:
    """Mean time per run of one op (or node) and the block it belongs to."""

    name: str
    op_type: str
    block: str
    ms: float


def block_labels(model: nn.Module, size: tuple[int, int]) -> dict[str, str]:
    """Module path -> block label for a DeepLab-like model, from one forward pass at ``size``.

    Backbone modules (children of the backbone, or of its Sequential containers) are labelled by
    the stride their output runs at ("backbone 1/4"); other top-level modules by their name.
    """
    labels: dict[str, str] = {}
    handles = []
    height = size[0]

    def hook(path: str):
        def fn(module, inputs, output) -> None:
            out = output[-1] if isinstance(output, list | tuple) else output
            if isinstance(out, torch.Tensor) and out.ndim == 4:
                reduction = 2 ** round(math.log2(height / out.shape[-2]))
                labels[path] = f"backbone 1/{reduction}"

        return fn

    for name, child in model.named_children():
        if name != "backbone":
            labels[name] = name
            continue
        for sub_name, sub in child.named_children():
            inner = list(sub.named_children()) if isinstance(sub, nn.Sequential) else []
            for path, module in [(f"backbone.{sub_name}.{n}", m) for n, m in inner] or [
                (f"backbone.{sub_name}", sub)
            ]:
                handles.append(module.register_forward_hook(hook(path)))
    try:
        with torch.inference_mode():
            model.eval()(torch.zeros(1, 3, *size))
    finally:
        for h in handles:
            h.remove()
    return labels


_OP_BLOCKS = {
    "Resize": "upsample",
    "upsample_bilinear2d": "upsample",
    "Interpolate": "upsample",
    "ArgMax": "argmax",
    "argmax": "argmax",
    "ReorderInput": "layout",
    "ReorderOutput": "layout",
    "Transpose": "layout",
    "Reorder": "layout",
}


def block_of(node_name: str, op_type: str, labels: dict[str, str]) -> str:
    """The block of an op: the module path found in its name, else by op type, else 'other'."""
    segments = [s for s in node_name.replace("::", "/").split("/") if s]
    for i in range(len(segments)):
        dotted = ".".join(segments[i:]) + "."
        best = max((p for p in labels if dotted.startswith(p + ".")), key=len, default=None)
        if best is not None:
            return labels[best]
    if "normalize" in node_name:
        return "normalize"
    base = op_type.split("::")[-1]
    return _OP_BLOCKS.get(base, "other")


def labels_for(card: ModelCard, engine: object, size: tuple[int, int]) -> dict[str, str]:
    """Block labels from the engine's own model when it has one, else from the card's config."""
    model = getattr(engine, "model", None)  # OpenVINO's engine has a non-torch one
    if not isinstance(model, nn.Module):
        model = None
    if model is None and card.model is not None:
        model = build_model(card.model)
    if model is None:
        return {}
    return block_labels(model, size)


def with_overhead(op_list: list[OpTime], stages: dict[str, float]) -> list[OpTime]:
    """The ops plus the time inside engine.run not spent in kernels (binding, executor, thread
    hand-offs, waits for cores, reading counters), measured against the network stage's wall
    time so that the blocks add up to the total."""
    idle = stages["network"] - sum(op.ms for op in op_list)
    if idle > 0:
        op_list = [*op_list, OpTime("session overhead", "overhead", "runtime overhead", idle)]
    return op_list
