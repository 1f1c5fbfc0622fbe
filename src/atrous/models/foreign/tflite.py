"""TF DeepLab model-zoo .tflite files (DeepLabV3 MobileNetV2) -> atrous DeepLab models.

The layout NXP's eIQ zoo and ST ship, as TF's converter writes it: a MobileNetV2 trunk (depth
multiplier 0.5 or 1.0, strides past the output stride turned into dilation), the
image-pooling + 1x1 head (ASPP-lite; 3x3 atrous branches are read too), a 1x1 logits conv and a
bilinear resize to the input size, float or int8 (QUANTIZE / DEQUANTIZE are pass-through,
weights dequantized). The graph is matched by structure, not by tensor names: the trunk is
every convolution upstream of the image pooling, the head is what reads the trunk. The width
multiplier, channel rounding, output stride, head branches, activation, number of classes and
resize are inferred, and every convolution's shape, stride, dilation, padding and fused
activation is checked against the atrous model built from them. BatchNorm is folded in the
file, so each atrous BatchNorm becomes the identity carrying the conv's bias.

TF's SAME padding is symmetric at the sizes TF DeepLab uses (513 = 2^k + 1, and any size whose
stride-2 inputs are all odd); atrous pads symmetrically, so a file with asymmetric SAME
padding (an even input size such as 512) is refused, naming the layer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from atrous.card import ModelCard, Provenance, card_from_json
from atrous.config import ModelConfig
from atrous.errors import ModelError
from atrous.models.deeplab import DeepLab
from atrous.models.foreign._tflite_checks import (
    ACTIVATIONS,
    check_conv,
    check_graph,
    check_pool,
    check_resize,
    refuse,
)
from atrous.models.foreign._tflite_graph import CONVS, GraphView, Operator, read_tflite_graph
from atrous.models.zoo import default_card

__all__ = ["TFLiteImport", "from_tflite"]

_BROADCASTS = ("RESIZE_BILINEAR", "RESIZE_NEAREST_NEIGHBOR", "BROADCAST_TO")
_EPS = 1e-5  # nn.BatchNorm2d's


@dataclass
class TFLiteImport:
    """An imported .tflite: the atrous model and card, the layout's name and the ``mapping``:
    tflite tensor names ``mapped`` as they were (biases), ``reshaped`` (kernels re-laid out from
    NHWC, the projection's inputs reordered), ``unmapped`` (constants not used: sizes, axes);
    atrous keys ``initialised`` (identity BatchNorm statistics)."""

    model: DeepLab
    card: ModelCard
    layout: str
    mapping: dict[str, list[str]] = field(default_factory=dict)


def _trunk(gv: GraphView) -> tuple[Operator, list[Operator], int]:
    """The image-pooling op, the trunk's convolutions (upstream of it) in execution order and
    the number of residual adds among them."""
    pools = [op for op in gv.ops if op.kind in ("MEAN", "AVERAGE_POOL_2D")]
    if len(pools) != 1:
        raise refuse(gv.g, f"{len(pools)} global pooling ops where the head has one")
    pool = pools[0]
    seen, stack = set(), [gv.source(pool.inputs[0])]
    while stack:
        t = stack.pop()
        op = gv.producer.get(t)
        if t in gv.pads:
            stack.append(gv.pads[t][0])
        if op is None or op.index in seen:
            continue
        seen.add(op.index)
        stack += [gv.source(i) for i in (op.inputs[:1] if op.kind in CONVS else op.inputs)]
    trunk = [op for op in gv.ops if op.index in seen]
    adds = sum(op.kind == "ADD" for op in trunk)
    return pool, [op for op in trunk if op.kind in CONVS], adds


def _head(gv: GraphView, pool: Operator, trunk_out: int) -> dict:
    """The head's ops by role: branches (concat order), pooling conv, project, classifier,
    the final resize and argmax (None when absent)."""
    pooled_conv = gv.reader(pool.outputs[0], "CONV_2D")
    if pooled_conv is None:
        raise refuse(gv.g, "no 1x1 conv after the image pooling")
    concat = next((op for op in gv.ops if op.kind == "CONCATENATION"), None)
    if concat is None:
        raise refuse(gv.g, "no concatenation of head branches")
    branches: list[Operator | None] = []
    for t in concat.inputs:
        op = gv.producer.get(gv.source(t))
        if op is not None and op.kind in _BROADCASTS:  # the pooled features, broadcast
            op = gv.producer.get(gv.source(op.inputs[0]))
        if op is pooled_conv:
            branches.append(None)  # the pooling branch
        elif op is not None and op.kind == "CONV_2D" and gv.source(op.inputs[0]) == trunk_out:
            branches.append(op)
        else:
            raise refuse(gv.g, f"concatenation input '{gv.g.tensors[t].name}' is no head branch")
    ones = [op for op in branches if op and gv.shape(op.inputs[1])[1] == 1]
    if len(ones) != 1:
        raise refuse(gv.g, f"{len(ones)} 1x1 branches in the head")
    project = gv.reader(concat.outputs[0], "CONV_2D")
    classifier = project and gv.reader(project.outputs[0], "CONV_2D")
    if project is None or classifier is None:
        raise refuse(gv.g, "no projection and logits convs after the concatenation")
    resize = gv.reader(classifier.outputs[0], "RESIZE_BILINEAR")
    tail = resize.outputs[0] if resize else classifier.outputs[0]
    argmax = gv.reader(tail, "ARG_MAX")
    return {
        "branches": branches,
        "one": ones[0],
        "concat": concat,
        "pooled": pooled_conv,
        "project": project,
        "classifier": classifier,
        "resize": resize,
        "argmax": argmax,
    }


def _width(channels: list[int]) -> list[tuple[float, int]]:
    """Candidate (width_mult, channel_divisor) pairs from the trunk's last conv channels."""
    width = round(channels[-1] / 320 * 20) / 20
    return [(width, 8), (width, 1)]


def _config(gv: GraphView, trunk: list[Operator], head: dict) -> ModelConfig:
    """The atrous config the graph describes (checked in detail by :func:`_check_conv`)."""
    strides = [op.options.get("strideH", 1) for op in trunk]
    output_stride = int(np.prod(strides))
    if output_stride not in (8, 16, 32):
        raise refuse(gv.g, f"trunk output stride {output_stride}")
    rates = tuple(op.options.get("dilationHFactor", 1) for op in _rate_branches(head))
    acts = {
        ACTIVATIONS.get(op.options.get("fusedActivationFunction", 0), "?")
        for op in _head_convs(head)
    }
    if len(acts) != 1 or not acts <= {"relu", "relu6"}:
        raise refuse(gv.g, f"head activations {sorted(acts)}")
    classifier = head["classifier"]
    resize = head["resize"]
    align_corners = bool(resize is not None and resize.options.get("alignCorners"))
    if not align_corners and resize is not None and not resize.options.get("halfPixelCenters"):
        raise ModelError(
            f"{gv.g.path}: layer '{gv.name(resize)}': legacy TF resize (neither align_corners "
            "nor half_pixel_centers) has no atrous equivalent"
        )
    channels = [gv.shape(op.inputs[1])[0 if op.kind == "CONV_2D" else 3] for op in trunk]
    for width, divisor in _width(channels):
        config = ModelConfig(
            backbone="mobilenet_v2",
            width_mult=width,
            channel_divisor=divisor,
            output_stride=output_stride,
            head="aspp" if rates else "pooling",
            atrous_rates=rates or None,
            head_channels=gv.shape(head["project"].inputs[1])[0],
            num_classes=gv.shape(classifier.inputs[1])[0],
            activation=next(iter(acts)),
            align_corners=align_corners,
        )
        built = [m for m in DeepLab(config).backbone.modules() if isinstance(m, nn.Conv2d)]
        if [m.weight.shape[0] for m in built] == channels:
            return config
    raise refuse(gv.g, f"trunk channels {channels[:4]}... are no MobileNetV2 width")


def _head_convs(head: dict) -> list[Operator]:
    return [op for op in head["branches"] if op] + [head["pooled"], head["project"]]


def _rate_branches(head: dict) -> list[Operator]:
    """The head's 3x3 atrous branches, in concat order."""
    return [op for op in head["branches"] if op and op is not head["one"]]


def _weights(gv: GraphView, op: Operator) -> tuple[np.ndarray, np.ndarray | None]:
    """(OIHW kernel, bias or None) of a CONV_2D / DEPTHWISE_CONV_2D."""
    kernel = gv.g.tensors[gv.source(op.inputs[1])].value
    bias_index = op.inputs[2] if len(op.inputs) > 2 else -1
    bias = gv.g.tensors[gv.source(bias_index)].value if bias_index >= 0 else None
    if kernel is None:
        raise ModelError(f"{gv.g.path}: layer '{gv.name(op)}': weights are not constant")
    order = (0, 3, 1, 2) if op.kind == "CONV_2D" else (3, 0, 1, 2)  # OHWI / 1HWO -> OIHW
    return np.ascontiguousarray(kernel.astype(np.float32).transpose(order)), bias


def _pairs(module: nn.Module, prefix: str) -> list[tuple[str, nn.Conv2d, str | None, str]]:
    """(conv key prefix, conv, its BatchNorm's key prefix or None, activation after it) in
    forward order."""
    named = list(module.named_modules())
    acts = {nn.ReLU6: "relu6", nn.ReLU: "relu"}
    out = []
    for i, (name, m) in enumerate(named):
        if not isinstance(m, nn.Conv2d):
            continue
        bn = named[i + 1] if i + 1 < len(named) else ("", None)
        after = named[i + 2][1] if bn[1] is not None and i + 2 < len(named) else None
        has_bn = isinstance(bn[1], nn.BatchNorm2d)
        act = acts.get(type(after), "none") if has_bn else "none"
        out.append((f"{prefix}{name}", m, f"{prefix}{bn[0]}" if has_bn else None, act))
    return out


def _project_order(head: dict) -> list[int]:
    """For each of atrous's concat segments (1x1, rates..., pooling), its position in the file's
    concatenation."""
    order = [head["one"], *_rate_branches(head), None]
    return [head["branches"].index(op) for op in order]


def _fill(
    gv: GraphView, ops: list[Operator], pairs: list, state: dict, used: set[int], order=None
) -> list[str]:
    """Copy each op's weights into its (conv, BN) pair; returns the kernels' names (all are
    re-laid out, NHWC to NCHW)."""
    names = []
    for op, (key, conv, bn, act) in zip(ops, pairs, strict=True):
        kernel, bias = _weights(gv, op)
        if order is not None:  # the projection: input channels in atrous's branch order
            seg = kernel.shape[1] // len(order)
            kernel = np.concatenate([kernel[:, i * seg : (i + 1) * seg] for i in order], axis=1)
        check_conv(gv, op, conv, kernel, act)
        bias = np.zeros(kernel.shape[0], np.float32) if bias is None else bias.astype(np.float32)
        state[f"{key}.weight"] = torch.from_numpy(kernel)
        target = f"{bn}.bias" if bn else f"{key}.bias"
        state[target] = torch.from_numpy(np.ascontiguousarray(bias))
        if bn:  # folded in the file: the identity, carrying the conv's bias
            state[f"{bn}.weight"] = torch.ones_like(state[target])
            state[f"{bn}.running_mean"] = torch.zeros_like(state[target])
            state[f"{bn}.running_var"] = torch.full_like(state[target], 1.0 - _EPS)
        used.update(gv.source(i) for i in op.inputs[1:] if i >= 0)
        names.append(gv.g.tensors[gv.source(op.inputs[1])].name)
    return names


def _card(gv: GraphView, config: ModelConfig, size: int, layout: str) -> ModelCard:
    """The imported model's card: TF DeepLab's [-1, 1] input (or the uint8 input's own
    quantization), VOC classes for 21 (or the classes of an atrous card inside the file)."""
    entry = "deeplabv3_mnv2_dm05_os16" if config.width_mult == 0.5 else "deeplabv3_mnv2_os16"
    card = default_card(entry, **config.model_dump())
    assumed = {"normalisation": "[-1, 1], TF DeepLab's convention; the .tflite does not say"}
    pre = {"resize": "fixed", "size": size, "pad_multiple": 1}
    inner = _embedded_card(gv.g.path)
    classes = card.classes if config.num_classes == 21 else None
    if inner is not None and len(inner.classes) == config.num_classes:
        classes, palette = inner.classes, inner.palette
        assumed = {}
        pre |= {"mean": inner.preprocessing.mean, "std": inner.preprocessing.std}
    else:
        palette = card.palette
        if classes is not None:
            assumed["classes"] = "PASCAL VOC's 21 (the count matches; the file names none)"
    if classes is None:
        classes = [f"class_{i}" for i in range(config.num_classes)]
    image = gv.g.tensors[gv.g.inputs[0]]
    if inner is None and image.dtype == "UINT8" and image.scale:  # the file's own contract
        mean, std = image.zero_point / 255, 1 / (255 * image.scale)
        pre |= {"mean": (mean,) * 3, "std": (std,) * 3}
        assumed.pop("normalisation")
    return card.model_copy(
        update={
            "name": gv.g.path.stem,
            "classes": classes,
            "palette": palette,
            "preprocessing": card.preprocessing.model_copy(update=pre),
            "provenance": Provenance(source=f"{layout}: {gv.g.path.name}", dataset=None),
            "assumed": assumed,
        }
    )


def _embedded_card(path: Path) -> ModelCard | None:
    """The atrous card inside a .tflite atrous exported, if any."""
    from atrous.card import tflite_card_json

    text = tflite_card_json(path.read_bytes())
    try:
        return card_from_json(text, str(path)) if text else None
    except Exception:  # noqa: BLE001 - a damaged card: fall back to TF's conventions
        return None


def _load_weights(
    gv: GraphView, model: DeepLab, trunk: list[Operator], head: dict
) -> tuple[dict[str, torch.Tensor], set[int], list[str]]:
    """(atrous state filled from the graph, constant tensors used, kernel names), every conv
    checked against the module it fills."""
    state: dict[str, torch.Tensor] = {}
    used: set[int] = set()
    kernels = _fill(gv, trunk, _pairs(model.backbone, "backbone."), state, used)
    branches = [head["one"], *_rate_branches(head)]
    kernels += _fill(gv, branches, _pairs(model.head.branches, "head.branches."), state, used)
    pooling = _pairs(model.head.pooling, "head.pooling.")
    kernels += _fill(gv, [head["pooled"]], pooling, state, used)
    project = _pairs(model.head.project, "head.project.")
    kernels += _fill(gv, [head["project"]], project, state, used, _project_order(head))
    classifier = [("classifier", model.classifier, None, "none")]
    kernels += _fill(gv, [head["classifier"]], classifier, state, used)
    return state, used, kernels


def from_tflite(path: str | Path) -> TFLiteImport:
    """Import a TF DeepLab zoo .tflite (see the module docstring) as an atrous model + card.

    Raises:
        ModelError: one line naming the file and the problem (not a TFLite file, truncated, not
            this layout and what it looked like, or the layer that atrous cannot express).
    """
    gv = GraphView(read_tflite_graph(path))
    size, _ = check_graph(gv)
    pool, trunk, adds = _trunk(gv)
    trunk_out = gv.source(pool.inputs[0])
    check_pool(gv, pool, trunk_out)
    head = _head(gv, pool, trunk_out)
    config = _config(gv, trunk, head)
    model = DeepLab(config).eval()
    residuals = sum(getattr(m, "use_residual", False) for m in model.backbone.modules())
    if adds != residuals:
        raise refuse(gv.g, f"{adds} residual adds where MobileNetV2 has {residuals}")
    state, used, kernels = _load_weights(gv, model, trunk, head)
    check_resize(gv, head, size)
    dm = f"{config.width_mult:g}"
    layout = f"TF DeepLab zoo (MobileNetV2 dm{dm})"
    biases = [gv.g.tensors[t].name for t in sorted(used) if gv.g.tensors[t].name not in kernels]
    unmapped = [t.name for t in gv.g.tensors if t.value is not None and t.index not in used]
    norms = {k.rsplit(".", 1)[0] for k in state if k.endswith(".running_var")}
    identity = [k for k in state if k.rsplit(".", 1)[0] in norms and not k.endswith(".bias")]
    initialised = sorted(identity + [k for k in model.state_dict() if k not in state])
    model.load_state_dict({**model.state_dict(), **state})
    mapping = {"mapped": biases, "reshaped": kernels, "unmapped": unmapped}
    mapping["initialised"] = initialised
    out = TFLiteImport(model, _card(gv, config, size, layout), layout, mapping)
    if head["argmax"] is not None:
        out.card.provenance.notes["tflite_output"] = "labels (ARG_MAX inside the graph)"
    return out
