"""The claims benchmarks/seed_claims.py measures: each a few model rows (existing zoo entries and
model options only) and a verdict rule on the measured rows (the first row is the baseline)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from atrous.config import ModelConfig
from atrous.models import default_card

DM05 = "deeplabv3_mnv2_dm05_os16"
ASPP = "deeplabv3_mnv2_a050_aspp_os16_512"
ZOO = [
    "deeplabv3_mnv2_a050_noaspp_257",
    DM05,
    ASPP,
    "deeplabv3_mnv2_os16",
    "deeplabv3_shufflenetv2_x1_os16",
    "deeplabv3plus_shufflenetv2_x1_os16",
    "lraspp_mobilenet_v3_large_tv",
    "deeplabv3_mobilenet_v3_large_tv",
]
INT8 = [DM05, "deeplabv3_shufflenetv2_x1_os16", "lraspp_mobilenet_v3_large_tv"]


def zoo_config(name: str, **fields: object) -> ModelConfig:
    """A zoo entry's model config (21 classes) with some existing options changed."""
    return default_card(name).model.model_copy(update={"num_classes": 21, **fields})


@dataclass
class Row:
    """One measured model: a label, its config, an optional size (else the run's) and
    precision, and an optional transform of the built model ('undilated')."""

    label: str
    config: ModelConfig
    size: int | None = None
    precision: str = "fp32"
    transform: str | None = None


@dataclass
class Claim:
    """A claim, its rows and the rule that turns the measured rows into a verdict."""

    title: str
    claim: str
    rows: list[Row]
    rule: Callable[[list[dict]], str]

    def verdict(self, rows: list[dict]) -> str:
        return self.rule(rows)


def _ratio(rows: list[dict], i: int, j: int = 0) -> float:
    return rows[i]["ms"] / rows[j]["ms"]


def _halving(rows: list[dict]) -> str:
    r = _ratio(rows, 0, 1)
    macs = rows[0]["macs"] / rows[1]["macs"]
    if 3.4 <= r <= 4.6:
        return f"confirmed: halving the side made it {r:.2f}x faster (multiply-adds {macs:.2f}x)"
    if r < 3.4:
        return (
            f"refuted: halving the side made it only {r:.2f}x faster (multiply-adds {macs:.2f}x; "
            "per-layer fixed costs do not shrink with the image)"
        )
    return (
        f"depends: halving the side made it {r:.2f}x faster, more than the multiply-adds "
        f"({macs:.2f}x): the larger maps fall out of cache"
    )


def _multiple_of_8(rows: list[dict]) -> str:
    per_pixel = _ratio(rows, 1) / (rows[1]["side"] ** 2 / rows[0]["side"] ** 2)
    if per_pixel > 1.05:
        return f"confirmed: one pixel more cost {per_pixel:.2f}x per pixel"
    if per_pixel < 1.02:
        return f"refuted: one pixel more cost {per_pixel:.2f}x per pixel (no penalty)"
    return f"depends: {per_pixel:.2f}x per pixel, at the edge of this run's noise"


def _faster(name: str, i: int, j: int, margin: float = 0.05) -> Callable[[list[dict]], str]:
    """Verdict rule: row ``i`` is claimed faster than row ``j``."""

    def rule(rows: list[dict]) -> str:
        r = _ratio(rows, i, j)
        if r < 1 - margin:
            return f"confirmed: {name} at {r:.2f}x the time"
        if r > 1 + margin:
            return f"refuted: {name} at {r:.2f}x the time (slower)"
        return f"depends: {name} at {r:.2f}x the time (within {margin:.0%})"

    return rule


def _upsampling(rows: list[dict]) -> str:
    nearest, transposed = _ratio(rows, 1), _ratio(rows, 2)
    word = "confirmed" if transposed > 1.05 else "refuted" if transposed < 0.95 else "depends"
    return (
        f"{word}: transposed convolution at {transposed:.2f}x bilinear's time, nearest at "
        f"{nearest:.2f}x (latency only here: mIoU after training is not measured in this run)"
    )


def _flops(rows: list[dict]) -> str:
    ms = np.log([r["ms"] for r in rows])
    r_macs = np.corrcoef(np.log([r["macs"] for r in rows]), ms)[0, 1]
    r_floor = np.corrcoef(np.log([r["floor"] for r in rows]), ms)[0, 1]
    r_bytes = np.corrcoef(np.log([r["bytes"] for r in rows]), ms)[0, 1]
    best = max(r_floor, r_bytes)
    figures = (
        f"r(time, MACs) = {r_macs:.3f}, r(time, bytes) = {r_bytes:.3f}, "
        f"r(time, roofline floor) = {r_floor:.3f}"
    )
    if best > r_macs + 0.02:
        return f"confirmed: memory traffic predicts time better than multiply-adds: {figures}"
    if best < r_macs - 0.02:
        return f"refuted: multiply-adds predicted time better than memory traffic here: {figures}"
    return f"depends: multiply-adds and the roofline floor predict time about equally: {figures}"


def _int8(rows: list[dict]) -> str:
    pairs = [(rows[i]["row"].label, _ratio(rows, i + 1, i)) for i in range(0, len(rows), 2)]
    slower = [f"{name.split(',')[0]} {r:.2f}x" for name, r in pairs if r > 1.0]
    text = ", ".join(f"{name.split(',')[0]} {r:.2f}x" for name, r in pairs)
    if slower:
        return f"confirmed (int8 can be slower): int8/fp32 time {text}"
    return f"refuted here (int8 faster for every backbone): int8/fp32 time {text}"


def _claims() -> dict[str, Claim]:
    dm05 = zoo_config(DM05)
    aspp = zoo_config(ASPP)
    return {
        "halving": Claim(
            "Halving the input size", "Claim: half the side, about 4x faster.",
            [Row(f"{DM05}, full side", dm05), Row(f"{DM05}, half side", dm05, size=-2)],
            _halving,
        ),
        "multiple8": Claim(
            "Multiples of 8 vs one pixel more",
            "Claim: input sides that are multiples of 8 run faster than one pixel more.",
            [Row(f"{DM05}, multiple of 8", dm05, size=-8), Row(f"{DM05}, +1 px", dm05, size=-9)],
            _multiple_of_8,
        ),
        "separable_aspp": Claim(
            "Separable vs standard ASPP", "Claim: depthwise-separable ASPP branches are faster.",
            [Row(f"{ASPP}, standard ASPP", aspp),
             Row(f"{ASPP}, separable ASPP", aspp.model_copy(update={"separable_aspp": True}))],
            _faster("separable ASPP", 1, 0),
        ),
        "upsampling": Claim(
            "Transposed convolution vs bilinear vs nearest upsampling",
            "Claim: prefer bilinear to a transposed convolution; nearest is often as good.",
            [Row(f"{DM05}, bilinear", dm05),
             Row(f"{DM05}, nearest", dm05.model_copy(update={"upsampling": "nearest"})),
             Row(f"{DM05}, transposed", dm05.model_copy(update={"upsampling": "transposed"}))],
            _upsampling,
        ),
        "dilation": Claim(
            "Dilation on vs off",
            "Claim: dilated convolutions are slower. The undilated model is the same network "
            "(shapes, weights, multiply-adds) with every dilation set to 1.",
            [Row(f"{ASPP}, undilated", aspp, transform="undilated"), Row(f"{ASPP}, dilated", aspp)],
            _faster("the undilated model", 0, 1),
        ),
        "activation": Claim(
            "ReLU vs hardswish", "Claim: cheap activations (ReLU) are faster than hardswish.",
            [Row(f"{DM05}, relu", dm05),
             Row(f"{DM05}, hardswish", dm05.model_copy(update={"activation": "hardswish"}))],
            _faster("ReLU", 0, 1, margin=0.03),
        ),
        "flops": Claim(
            "Multiply-adds vs measured time across the zoo",
            "Claim: FLOPs are not enough, memory access cost matters.",
            [Row(name, zoo_config(name)) for name in ZOO],
            _flops,
        ),
        "int8": Claim(
            "int8 vs fp32 per backbone (ONNX Runtime, static QDQ)",
            "Claim: post-training quantization can even slow a model down.",
            [Row(f"{n}, {p}", zoo_config(n), precision=p) for n in INT8 for p in ("fp32", "int8")],
            _int8,
        ),
    }  # fmt: skip


CLAIMS = _claims()
