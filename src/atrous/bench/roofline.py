"""Memory-access cost per layer: bytes moved, arithmetic intensity and the roofline floor.

Multiply-adds alone do not predict CPU time: a depthwise convolution or a resize moves a byte
for every multiply-add or two, so it waits for memory, not for the arithmetic units. For each
layer of a model (convolutions, transposed convolutions, linear layers, pooling and resizes;
BatchNorm and activations are counted as fused into the convolution before them, as every
exported graph here runs them) this module counts the bytes read (input activation, weights,
bias) and written (output activation) at the layer's precision (fp32: 4 B, int8: 1 B per
element; a bias is 4 B either way, int32 in a quantized graph), the multiply-adds, and their
ratio, the arithmetic intensity (MAC/byte). Against this machine's measured roofs
(:mod:`atrous.bench.peaks`) a layer whose intensity is below the machine balance (peak MAC/s /
bandwidth) is bandwidth-bound; its floor time is ``max(MACs / peak, bytes / bandwidth)``, and
its efficiency is floor / measured time. The floor assumes every byte comes from memory: a
layer whose activations stay in cache can beat it (efficiency above 100%).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from time import perf_counter
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from atrous.bench._profile_blocks import OpTime
from atrous.bench.peaks import Peaks, load_peaks
from atrous.bench.profile import Profile
from atrous.errors import InputError
from atrous.models import build_model
from atrous.segmenter import Segmenter

__all__ = [
    "BYTES_PER_ELEMENT",
    "Layer",
    "Roofline",
    "layer_traffic",
    "model_of",
    "module_path",
    "roofline",
    "roofline_of",
    "times_from_ops",
]

BYTES_PER_ELEMENT = {"fp32": 4, "int8": 1}
_POOLS = (nn.AdaptiveAvgPool2d, nn.AvgPool2d, nn.MaxPool2d, nn.AdaptiveMaxPool2d)
_COUNTED = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear, *_POOLS)


@dataclass
class Layer:
    """One layer's traffic and work, its measured time (ms, when known) and its roofline."""

    name: str
    kind: str
    macs: int
    read_bytes: int
    write_bytes: int
    ms: float | None = None
    floor_ms: float = 0.0
    bound: str = ""

    @property
    def bytes(self) -> int:
        """Bytes read plus bytes written."""
        return self.read_bytes + self.write_bytes

    @property
    def intensity(self) -> float:
        """Arithmetic intensity: multiply-adds per byte moved."""
        return self.macs / self.bytes if self.bytes else 0.0

    @property
    def efficiency(self) -> float | None:
        """Roofline floor / measured time (1.0 = at the roof), None when unmeasured."""
        return self.floor_ms / self.ms if self.ms else None


def _macs(module: nn.Module, inputs: torch.Tensor, output: torch.Tensor) -> int:
    """Multiply-adds of one layer: one per weight per output position (per input position for
    a transposed convolution), as :mod:`atrous.cost` counts them; none for pooling."""
    if isinstance(module, nn.Conv2d):
        return output.numel() * module.weight[0].numel()
    if isinstance(module, nn.ConvTranspose2d):
        return inputs.numel() * module.weight[0].numel()
    if isinstance(module, nn.Linear):
        return output.numel() * module.in_features
    return 0


def _kind(module: nn.Module) -> str:
    """A short layer kind: depthwise conv, conv 1x1, conv 3x3, transposed conv, linear, pool."""
    if isinstance(module, nn.ConvTranspose2d):
        return "transposed conv"
    if isinstance(module, nn.Conv2d):
        if module.groups > 1 and module.groups == module.in_channels:
            return "depthwise conv"
        return "conv {}x{}".format(*module.kernel_size)
    return "linear" if isinstance(module, nn.Linear) else "pool"


def _traffic(module: nn.Module | None, x: torch.Tensor, y: torch.Tensor, size: int) -> tuple:
    """(bytes read, bytes written): activations at ``size`` B per element, weights too, bias 4 B."""
    weight = getattr(module, "weight", None)
    bias = getattr(module, "bias", None)
    read = x.numel() * size
    if isinstance(weight, torch.Tensor):
        read += weight.numel() * size
    if isinstance(bias, torch.Tensor):
        read += bias.numel() * 4
    return read, y.numel() * size


class _Tracer(TorchFunctionMode):
    """Records every F.interpolate call (a resize: no multiply-adds, all traffic) under the
    innermost module running it, timed like the layers."""

    def __init__(self, stack: list[str], record) -> None:
        super().__init__()
        self.stack, self.record = stack, record

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func is not nn.functional.interpolate:
            return func(*args, **(kwargs or {}))
        t0 = perf_counter()
        out = func(*args, **(kwargs or {}))
        name = (self.stack[-1] if self.stack and self.stack[-1] else "model") + ".resize"
        self.record(name, "resize", None, args[0], out, perf_counter() - t0)
        return out


def layer_traffic(
    model: nn.Module,
    size: tuple[int, int],
    precision: str = "fp32",
    *,
    runs: int = 0,
    threads: int | None = None,
) -> list[Layer]:
    """The layers of one forward pass at ``size`` (H, W) in execution order, with their bytes and
    multiply-adds at ``precision``; with ``runs`` > 0 also each layer's mean eager time (ms)
    over that many timed passes after one warm-up, at ``threads``."""
    elem = BYTES_PER_ELEMENT[precision]
    layers: dict[str, Layer] = {}
    seconds: Counter[str] = Counter()
    stack: list[str] = []
    started: dict[str, float] = {}
    seen: set[str] = set()

    def record(name, kind, module, x, y, elapsed) -> None:
        if name in seen:  # a module resizing twice: one layer per call
            name = f"{name}#{sum(n.split('#')[0] == name for n in seen) + 1}"
        seen.add(name)
        if name not in layers:
            read, write = _traffic(module, x, y, elem)
            layers[name] = Layer(name, kind, _macs(module, x, y), read, write)
        seconds[name] += elapsed

    def pre(path: str):
        def fn(module, inputs) -> None:
            stack.append(path)
            started[path] = perf_counter()

        return fn

    def post(path: str):
        def fn(module, inputs, output) -> None:
            stack.pop()
            if isinstance(module, _COUNTED):
                elapsed = perf_counter() - started[path]
                record(path, _kind(module), module, inputs[0], output, elapsed)

        return fn

    handles = []
    for path, module in model.named_modules():
        handles.append(module.register_forward_pre_hook(pre(path)))
        handles.append(module.register_forward_hook(post(path)))
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    x = torch.zeros(1, 3, *size)
    try:
        with torch.inference_mode(), _Tracer(stack, record):
            model.eval()
            for i in range(1 + runs):
                if i <= 1:
                    seconds.clear()  # the warm-up pass is not timed
                seen.clear()
                model(x)
    finally:
        torch.set_num_threads(before)
        for h in handles:
            h.remove()
    if runs:
        for name, layer in layers.items():
            layer.ms = seconds[name] * 1e3 / runs
    return list(layers.values())


def times_from_ops(layers: list[Layer], ops: list[OpTime]) -> float:
    """Give each layer the time of the profiled ops whose names carry its module path (ONNX
    Runtime and OpenVINO node names do: ``/backbone/features.3/conv/conv.0/Conv``, a fused
    activation included); returns the op time no layer claimed (adds, layout, overhead)."""
    names = {layer.name: layer for layer in layers}
    for layer in layers:
        layer.ms = None
    spare = 0.0
    for op in ops:
        owner = _owner(op.name, op.op_type, names)
        if owner is None:
            spare += op.ms
        else:
            owner.ms = (owner.ms or 0.0) + op.ms
    return spare


def module_path(node_name: str) -> list[str]:
    """Module-path segments of an exported node name: the exporter writes each Sequential child
    after its container's own segment (``/conv/conv.0/conv.0.0/Conv``), which is module path
    ``conv.0.0``; a segment that extends the one before it keeps only the extension."""
    parts: list[str] = []
    previous = ""
    for segment in (s for s in node_name.replace("::", "/").split("/") if s):
        parts.append(
            segment[len(previous) + 1 :] if segment.startswith(previous + ".") else segment
        )
        previous = segment
    return parts


def _owner(op_name: str, op_type: str, layers: dict[str, Layer]) -> Layer | None:
    """The layer whose module path is the longest one the op's name starts with (a Resize op
    only matches a resize, named after the module that ran it; an unplaced one the last
    resize, the model's output)."""
    segments = module_path(op_name)
    resize = "Resize" in op_type or "Interpolate" in op_type
    candidates = sorted(
        (p for p, layer in layers.items() if (layer.kind == "resize") == resize), key=len
    )[::-1]
    for i in range(len(segments)):
        dotted = ".".join(segments[i:]) + "."
        for path in candidates:
            stem = path.split("#")[0]
            stem = stem[: -len("resize")] if resize else stem + "."
            if stem != "model." and dotted.startswith(stem):
                return layers[path]
    if resize:  # OpenVINO names the final resize after the output ("logits")
        last = [p for p, layer in layers.items() if layer.kind == "resize"]
        return layers[last[-1]] if last else None
    return _fused_into(segments, op_type, candidates, layers)


def _fused_into(
    segments: list[str], op_type: str, candidates: list[str], layers: dict[str, Layer]
) -> Layer | None:
    """A fused convolution named after its activation (ONNX Runtime names ``conv.0.2/Clip``):
    the last layer of the same container at or before that position."""
    if "Conv" not in op_type:
        return None
    for k in range(len(segments) - 1, 0, -1):
        parent = ".".join(segments[:k]) + "."
        here = segments[k]
        siblings = [p for p in layers if p in candidates and p.startswith(parent)]
        before = [
            p
            for p in siblings
            if not (here.isdigit() and p[len(parent) :].split(".")[0].isdigit())
            or int(p[len(parent) :].split(".")[0]) <= int(here)
        ]
        if before:
            return layers[before[-1]]
    return None


@dataclass
class Roofline:
    """Per-layer roofline of one model at one precision against one machine's peaks."""

    peaks: Peaks
    precision: str
    size: tuple[int, int]
    layers: list[Layer]
    unattributed_ms: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def floor_ms(self) -> float:
        """Sum of the layers' floors: the time this graph cannot beat from memory."""
        return sum(layer.floor_ms for layer in self.layers)

    @property
    def measured_ms(self) -> float:
        """Sum of the layers' measured times."""
        return sum(layer.ms or 0.0 for layer in self.layers)

    def bandwidth_bound(self) -> list[Layer]:
        """The layers below the machine balance."""
        return [layer for layer in self.layers if layer.bound == "memory"]

    def summary(self) -> str:
        """Floors, measured time and the share of it in bandwidth-bound layers."""
        mem = self.bandwidth_bound()
        mem_ms = sum(layer.ms or 0.0 for layer in mem)
        share = mem_ms / self.measured_ms if self.measured_ms else 0.0
        return (
            f"{len(mem)} of {len(self.layers)} layers bandwidth-bound ({share:.0%} of layer "
            f"time); floor {self.floor_ms:.2f} ms vs {self.measured_ms:.2f} ms measured in "
            f"layers ({self.floor_ms / max(self.measured_ms, 1e-9):.0%} of the roof)"
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary (each layer with its bytes, intensity and efficiency)."""
        rows = [
            {**asdict(layer), "intensity": layer.intensity, "efficiency": layer.efficiency}
            for layer in self.layers
        ]
        return {
            "peaks": asdict(self.peaks),
            "precision": self.precision,
            "size": list(self.size),
            "floor_ms": self.floor_ms,
            "measured_ms": self.measured_ms,
            "unattributed_ms": self.unattributed_ms,
            "layers": rows,
        }

    def figure(self):
        """Roofline plot: layers as points (intensity, achieved GMAC/s) under the measured roof."""
        from atrous.bench._roofline_plot import roofline_figure

        return roofline_figure(self)


def roofline(
    layers: list[Layer], peaks: Peaks, precision: str = "fp32", size: tuple[int, int] = (0, 0)
) -> Roofline:
    """Classify each layer against ``peaks`` and set its floor time (ms)."""
    peak = peaks.gmacs(precision) * 1e9
    bandwidth = peaks.bandwidth_gbs * 1e9
    balance = peaks.balance(precision)
    for layer in layers:
        layer.bound = "memory" if layer.intensity < balance else "compute"
        layer.floor_ms = max(layer.macs / peak, layer.bytes / bandwidth) * 1e3
    return Roofline(peaks, precision, size, layers)


def model_of(segmenter: Segmenter) -> nn.Module:
    """The torch model behind a Segmenter: its engine's own, else built from its card."""
    model = getattr(segmenter.engine, "model", None)
    if isinstance(model, nn.Module):
        return model
    if segmenter.card.model is None:
        raise InputError(
            "this model's card has no model config: the roofline needs the layers' shapes"
        )
    return build_model(segmenter.card.model)


def roofline_of(
    segmenter: Segmenter,
    prof: Profile,
    *,
    precision: str = "fp32",
    remeasure_peaks: bool = False,
    timed_runs: int = 5,
) -> Roofline:
    """The roofline of a profiled Segmenter at its profile's size and threads: layer times from
    the profile's per-node ops (ONNX Runtime, OpenVINO), or from an eager pass timed per layer
    when the profile ran torch (whose profiler reports ops by type, not by layer)."""
    if precision not in BYTES_PER_ELEMENT:
        raise InputError(f"precision '{precision}': expected one of {sorted(BYTES_PER_ELEMENT)}")
    net = model_of(segmenter)
    peaks = load_peaks(prof.threads, remeasure=remeasure_peaks)
    if prof.engine == "torch":
        layers = layer_traffic(net, prof.size, precision, runs=timed_runs, threads=prof.threads)
        spare = 0.0
    else:
        layers = layer_traffic(net, prof.size, precision)
        spare = times_from_ops(layers, prof.ops)
    result = roofline(layers, peaks, precision, prof.size)
    result.unattributed_ms = spare
    return result
