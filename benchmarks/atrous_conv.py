"""Training cost of dilated depthwise convolutions: PyTorch's dilated kernel against the phase
split of ``atrous.models.atrous_conv`` (exact; training only), per layer and per demo step.

Each pair runs interleaved in one process (dilated, split, dilated, ...), 2 threads, medians.

    python benchmarks/atrous_conv.py [--rounds 6]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

import atrous.models.atrous_conv as atrous_conv
from atrous.models.zoo import get_model

# (batch, channels, map size, dilation): the demo's dilated layers (192 px crops, OS16); a
# 513 px crop at OS16 and OS8 (dm1.0); an Xception exit-flow layer at 33 px.
LAYERS = [(16, 480, 12, 2), (16, 480, 24, 2), (8, 960, 33, 2), (8, 576, 65, 2), (8, 728, 33, 2)]


def _median_ms(fn: Callable[[], None], other: Callable[[], None], rounds: int) -> list[float]:
    """Medians (ms) of ``fn`` and ``other``, interleaved ``rounds`` times after one warm-up."""
    times: list[list[float]] = [[], []]
    fn(), other()
    for _ in range(rounds):
        for k, f in enumerate((fn, other)):
            start = time.perf_counter()
            f()
            times[k].append((time.perf_counter() - start) * 1000)
    return [statistics.median(t) for t in times]


def _layer_pair(n: int, c: int, size: int, d: int) -> tuple[Callable[[], None], ...]:
    """Forward + backward of one depthwise 3x3 layer, channels-last: dilated, then split."""
    weight = torch.randn(c, 1, 3, 3, requires_grad=True)
    x = torch.randn(n, c, size, size).contiguous(memory_format=torch.channels_last)
    x.requires_grad_()
    grad = torch.randn(n, c, size, size).contiguous(memory_format=torch.channels_last)

    def dilated() -> None:
        F.conv2d(x, weight, None, 1, d, d, c).backward(grad)

    def split() -> None:
        atrous_conv.phase_split_conv2d(x, weight, None, d, c).backward(grad)

    return dilated, split


def layer_rows(rounds: int) -> list[str]:
    """One table row per layer of LAYERS: both times, the ratio, and the route taken."""
    rows = []
    for n, c, size, d in LAYERS:
        a, b = _median_ms(*_layer_pair(n, c, size, d), rounds)
        auto = "split" if n * c * size * size <= atrous_conv._SPLIT_MAX_ELEMENTS else "dilated"
        shape = f"{n} x {c} x {size} x {size}, d={d}"
        rows.append(f"| {shape} | {a:.1f} | {b:.1f} | {a / b:.2f} | {auto} |")
    return rows


def step_row(rounds: int) -> str:
    """One demo training step (192 px, batch 16, AdamW) with the split on and off."""
    torch.manual_seed(0)
    model = get_model("deeplabv3_mnv2_dm05_os16", num_classes=5, dropout=0.0)
    model = model.to(memory_format=torch.channels_last).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)
    x = torch.randn(16, 3, 192, 192).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 5, (16, 192, 192))
    limit = atrous_conv._SPLIT_MAX_ELEMENTS

    def step(split: bool) -> None:
        atrous_conv._SPLIT_MAX_ELEMENTS = limit if split else 0
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    a, b = _median_ms(lambda: step(False), lambda: step(True), rounds)
    atrous_conv._SPLIT_MAX_ELEMENTS = limit
    return f"| demo training step (16 x 3 x 192 x 192) | {a:.0f} | {b:.0f} | {a / b:.2f} | split |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args()
    torch.set_num_threads(2)
    print("| forward + backward | dilated (ms) | split (ms) | speed-up | AtrousConv2d takes |")
    print("|---|---|---|---|---|")
    for row in layer_rows(args.rounds):
        print(row)
    print(step_row(args.rounds))


if __name__ == "__main__":
    main()
