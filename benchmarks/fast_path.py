"""The fast CPU path against PyTorch eager, naive ONNX Runtime fp32/int8 and OpenVINO, in one run.

Regenerate ``benchmarks/results/fast_path.md``::

    PYTHONPATH=src python benchmarks/fast_path.py --runs 30 --sizes 513,257 --threads 1,2

All targets run interleaved (A, B, C, A, B, C, ...) so their ratios hold on a noisy machine.
Accuracy is measured against the float PyTorch path: on synthetic images with diversified random
weights (a pessimistic proxy: an untrained network's label map has far more boundaries than a
trained one's) and, for the postprocessing shortcut alone, on synthetic label maps through ideal
output-stride-16 logits.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from atrous.bench.latency import BenchTarget, benchmark, with_input_size
from atrous.bench.profile import profile_segmenter
from atrous.bench.records import BenchResult
from atrous.export.onnx import export_onnx
from atrous.export.parity import diversify, sample_batch, synthetic_image
from atrous.fastpath import DEFAULT_LABEL_STRIDE, export_fast_int8, export_fast_onnx, fast_engine
from atrous.models import default_card, get_model
from atrous.runtimes import TorchEngine
from atrous.runtimes.openvino_engine import OpenVinoEngine
from atrous.segmenter import Segmenter
from atrous.sources import load_engine

NAME = "deeplabv3_mnv2_dm05_os16"
NOTES = """## Notes

Reading the tables:

- The default path is the int8 fast graph on OpenVINO: uint8 RGB pixels in, channels-last
  (the decoded image is copied into the padded canvas as it is; the transpose merges into the
  CPU plugin's own first reorder); the input normalisation folded into the stem convolution
  (its zero padding becomes a one-pixel border of the mean colour that the host writes while it
  pads the image, so image borders stay right); internal channel groups padded with zero
  channels to multiples of 16 (exact); ASPP image pooling as a GlobalAveragePool whose features
  enter the projection as a per-image bias (no pooled map broadcast and concatenated); BN folded
  and biases corrected for int8 weight rounding in PyTorch, then the whole network quantized by
  NNCF (symmetric uint8 activations, per-channel int8 weights; depthwise layers included) down
  to float logits at the network's resolution. The host computes the labels at 1/2 of the input
  with `atrous.upsample.sparse_upsample_argmax` (the labels of a bilinear upsample + argmax,
  interpolating the 21 scores only where the four low-resolution neighbours disagree) and
  writes each as a 2x2 block of the full-size mask in the same pass. `atrous export MODEL
  --fast --calib DATA` writes it (`-o x.onnx` gives the ONNX Runtime build of the same graph,
  "atrous fast int8 (ORT)"). The engine compiles the model for the input shape once a size
  repeats.
- The tail's cost depends on the label map: the random weights timed here change class at
  almost every low-resolution cell (98% of cells are boundaries: the kernel's worst case, ~2 ms
  at 513), a trained model's maps have boundaries in ~10-20% of cells (~0.3-0.5 ms).
- The first table interleaves every configuration run by run (A, B, C, ... A, B, C), so
  ratios hold on a noisy machine; each sample of a path then starts with caches that 31 other
  configurations have just used. "The default path alone" measures it back to back in the same
  run, as a process serving only this model runs it; the 15 ms target is checked on that figure
  and the interleaved one is given beside it.
- Accuracy is measured twice. On a trained checkpoint (the demo model, its own validation set,
  the one evaluator) the table gives the true mIoU cost of each shortcut; that is the figure the
  0.5-point budget is checked against. The random-weight table is a stress test only: untrained
  (diversified) weights change class every few pixels and have near-zero logit margins, so
  int8 rounding flips half their pixels while it costs a trained model a few hundredths of a
  point.
- "eager network / this e2e" divides the bare PyTorch network (no pre/postprocessing) by each
  path's whole JPEG-to-mask time, as the issue's 4x target is defined.
- Figures from a shared virtual machine: the header gives the share of CPU time the hypervisor
  took during the timed runs. The same network's speed also drifts by up to 1.5x between
  minutes without any stolen time (other tenants' cache and memory traffic); compare paths
  within one run.

Changed on 2026-11-29 (morning): the default path moved from ONNX Runtime to OpenVINO, which
runs the same int8 graph's network in ~0.7x the time (10.8 against 15.0 ms interleaved, 513x513,
2 threads). Earlier stops measured OpenVINO int8 at 25-50 ms and dropped it; the cause was in
how the IR was made, not in the plugin. OpenVINO's ONNX reader gives each depthwise weight as
a Reshape of a constant, and NNCF, quantizing that, chose one scale per channel *and kernel
column* (shape [C,1,1,1,3]); the CPU plugin cannot run such weights in int8, so every depthwise
layer ran in float between int8 layers, with reorders around each (per-layer counters:
`brgconv_avx512_dw_f32`). `openvino.convert_model` folds the Reshape first; NNCF then gives one
scale per output channel and the plugin runs the depthwise layers in int8
(`brgconv_avx512_dw_I8`; a test checks both). Symmetric activations (NNCF's performance preset)
ran 0.87x the asymmetric ones; a static shape 0.9x a dynamic one (hence the per-shape compile);
channels-last input 0.89x planar. Unlike ONNX Runtime's, OpenVINO's int8 kernels also win on the
narrow stem and first block, so nothing stays float but the logits. Accuracy on the demo model:
-0.19 mIoU, against -0.32 for the ONNX Runtime build.

Where the time went in the ONNX Runtime build at 513x513 (the graph runs at 520x520, the image
padded to a multiple of 8; ONNX Runtime profile in a quiet minute, ms): int8 convolutions ~7.4, the
float stem and first block ~2.1-2.5 (int8 there measured 2-3x slower; ONNX Runtime's int8
kernels lose on 8-16 channels at 1/2 resolution), the uint8 -> float cast ~0.4, the float/int8
boundary (blocked-layout reorder, quantize, transpose) ~0.9; outside the graph, JPEG decode
~1.9-2.6 (libjpeg-turbo through simplejpeg), preprocessing ~0.3 and the sparse upsample +
argmax 0.8-1.3 on the trained model's maps of these synthetic photos. The in-graph tail it
replaced (ONNX Runtime Resize to 1/2 and ArgMax, even in NHWC) took ~2.1 ms whatever the
weights.

Removed on 2026-11-29, each measured in one process against the previous graph or code:
- the ASPP image-pooling branch as a broadcast map concatenated to the 1x1 branch: the
  projection is linear, so the pooled features enter as a per-image bias
  (`atrous.models.aspp.PooledBiasASPP`, exact). No Expand, no shape arithmetic, no
  QLinearConcat and its layout transposes, and half the projection's input channels: the head
  took 0.96 instead of 1.72 ms;
- the float classifier behind a dequantized copy of the head's output and two blocked-layout
  reorders (~0.7 ms): one MatMulIntegerToFloat on the uint8 head output (int8 weights, one scale
  per class, 0.11 ms; logits stay exact int32 sums rescaled, and the masks matched the float
  classifier's). With the head change: network 13.75 -> 12.71 ms in a fast minute, 17.62 ->
  16.28 in a slow one (0.92x both times), -0.32 mIoU on the demo model as before;
- the uint8 NHWC -> NCHW transpose at the graph's input (0.4 ms): the graph takes planar
  pixels, which the host writes by splitting the decoded image's channels straight into the
  padded canvas (0.13 ms, against 0.08 for the interleaved copy): 15.91 -> 15.50 ms;
- the tail's equal row bands: the two bands now split where the boundary work is even (one
  band had held twice the other's work on the trained model's map).

Removed on 2026-11-28 (night), each measured in one process against the previous graph:
- the 72-channel layers at 1/4 resolution (MobileNetV2 0.5 expands 12 -> 72 there): ONNX
  Runtime's int8 depthwise kernel ran them at 0.85 G outputs/s against 1.7-2.6 G/s for 48, 96
  and 480 channels (1.43 ms for the 130x130x72 layer, the most expensive node of the graph).
  Padded with zero channels to 80 it takes 0.65 ms; the graph's node time fell from 13.9 to
  12.8 ms and its logits are bit-identical. Padding the 8- and 12-channel residual streams as
  well gained nothing more (12.7 ms), so only internal groups are padded;
- the in-graph border (Shape, Slice, Concat and Expand nodes around the uint8 input, ~0.3 ms):
  the host writes it into the canvas it fills anyway (+0.04 ms);
- the label enlargement after the sparse argmax (an OpenCV nearest resize, crop and copy,
  ~0.3 ms): the kernel writes each label as a 2x2 block directly. On the trained model's map
  the whole tail took 0.75 against 0.94-1.1 ms (2 threads, interleaved in one process,
  identical masks); on the random-weight maps, where nearly every label is decided pixel by
  pixel, the wider writes cost about what the resize saved.

Tried and not kept: deciding a run of pixels between two classes at the point where their
(linear) scores cross instead of pixel by pixel (exact when no third class wins there): no
faster, the per-pixel argmax over 21 classes is not where the kernel's time goes.

Tried this session and not kept (measured here): the stem in int8 on the raw pixels (3.0 ms vs
1.0 float), float depthwise islands in the int8 graph (+15%), OpenVINO on the QDQ graph or on an
NNCF int8 IR of the fast graph (25-26 ms), a uint8 Resize of the logits (2x slower than float),
TopK instead of ArgMax (3x slower), a space-to-depth stem (slower), normalisation as a
per-channel DequantizeLinear (slower than Cast + 1x1 conv). (The OpenVINO figure was an IR whose
depthwise layers ran in float; see "Changed on 2026-11-29 (morning)".)

Tried on 2026-11-29 and not kept: the stem on a space-to-depth input (2x2 conv over 12
channels, exact): in int8 the graph gained 0.6 ms but the host's rearrangement cost 1.3 ms and
the int8 stem (1.64 ms) and 16-channel depthwise (2.18 ms) lost to float (1.33, 1.0); in float
the stem took 2.56 ms. A numba kernel fusing stem, depthwise, projection and quantization (1 LSB
from the graph) took 19.5 ms: LLVM did not vectorise it. The pooled bias added in float
(0.26 ms against 0.20 for the uint8 add); the block-1 projection in int8 (0.83 against 0.47 ms);
float input written by the host instead of the in-graph cast (the same time); ONNX Runtime's
dynamic block partitioning (the same time). The tail's row bands on numba's parallel threads
instead of a Python thread pool: 0.2 ms faster end to end, but numba's OpenMP layer terminates
forked children that segment and its other layer is not thread-safe.

What would buy more margin on these two cores:
1. an NHWC depthwise+pointwise fused kernel library (XNNPACK; this ONNX Runtime wheel has no
   XNNPACK execution provider): keeps expanded activations in cache instead of a round trip to
   memory per layer;
2. output stride 32 or a 385 input: 2-4x less work in the dominant stages, but each needs its
   own accuracy check and usually costs more than 0.5 mIoU;
3. for throughput rather than latency: decode the next image while the network runs.
"""
OUT = Path(__file__).parent / "results" / "fast_path.md"


def quantize_naive(source: Path, path: Path, card, sizes: list[int]) -> Path:
    """ONNX Runtime static int8 of the plain export: QDQ, uint8 activations, per-channel weights."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    batches = [sample_batch(card, (s, s), seed=i) for i, s in enumerate(sizes * 4)]

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter([{"input": b} for b in batches])

        def get_next(self):
            return next(self.items, None)

    quantize_static(
        str(source),
        str(path),
        Reader(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
    )
    import onnx

    from atrous.card import write_onnx_card

    proto = onnx.load(str(path))
    write_onnx_card(proto, card)
    onnx.save(proto, str(path))
    return path


DEFAULT = f"atrous fast int8 (OpenVINO), labels 1/{DEFAULT_LABEL_STRIDE} (default)"
FAST_ORT = f"atrous fast int8 (ORT), labels 1/{DEFAULT_LABEL_STRIDE}"
TRAINED = "default path, trained weights (demo model widened to 21 classes)"


def open_fast(path: Path, threads: int) -> Segmenter:
    """A Segmenter on a fast graph, on the engine its suffix names (.xml OpenVINO, .onnx ORT)."""
    cv2.setNumThreads(1)
    engine, loaded = load_engine(path, fast_engine(path), threads)
    return Segmenter(engine, loaded)


def build_targets(tmp: Path, sizes: list[int]) -> tuple[list[BenchTarget], Any, Any]:
    """The compared paths, all from one set of (diversified) weights."""
    model = get_model(NAME).eval()
    card = default_card(NAME)
    diversify(model, card)
    plain = export_onnx(model, card, tmp / "plain.onnx")
    int8 = quantize_naive(plain, tmp / "plain_int8.onnx", card, sizes)
    fast = export_fast_onnx(model, card, tmp / "fast.onnx", label_stride=DEFAULT_LABEL_STRIDE)
    fast1 = export_fast_onnx(model, card, tmp / "fast_s1.onnx", label_stride=1)
    photos = [synthetic_image(s, s, seed=i) for i, s in enumerate(sizes * 8)]
    fast_ort = export_fast_int8(model, card, tmp / "fast_int8.onnx", photos, num=len(photos))
    fast_ov = export_fast_int8(model, card, tmp / "fast_int8.xml", photos, num=len(photos))

    def fast_target(label: str, path: Path) -> BenchTarget:
        return BenchTarget(label, lambda threads: open_fast(path, threads), path)

    def onnx_target(label: str, path: Path) -> BenchTarget:
        def open_(threads: int) -> Segmenter:
            engine, loaded = load_engine(path, "onnxruntime", threads)
            return Segmenter(engine, loaded)

        return BenchTarget(label, open_, path)

    targets = [
        BenchTarget("torch eager", lambda t: Segmenter(TorchEngine(model, t), card)),
        onnx_target("ORT fp32 (plain export)", plain),
        onnx_target("ORT int8 (plain export)", int8),
        BenchTarget(
            "OpenVINO fp32 (plain export)",
            lambda t: Segmenter(OpenVinoEngine(plain, t, precision="f32"), card),
            plain,
        ),
        fast_target("atrous fast fp32 (ORT), labels 1/1", fast1),
        fast_target(f"atrous fast fp32 (ORT), labels 1/{DEFAULT_LABEL_STRIDE}", fast),
        fast_target(FAST_ORT, fast_ort),
        fast_target(DEFAULT, fast_ov),
    ]
    return targets, model, card


def trained_at_21_classes(checkpoint: Path) -> torch.nn.Module:
    """The zoo model (21 classes) carrying a trained checkpoint's weights: its classes keep
    their classifier rows, the other 16 get a bias that never wins. Same network, same
    cost, but the label maps of a trained model (the host-side tail's cost depends on them)."""
    from atrous.export.pipeline import load_source

    trained, _ = load_source(checkpoint)
    model = get_model(NAME).eval()
    state = {k: v for k, v in trained.state_dict().items() if not k.startswith("classifier.")}
    model.load_state_dict(state, strict=False)
    with torch.no_grad():
        n = trained.classifier.weight.shape[0]
        model.classifier.weight.zero_()
        model.classifier.bias.fill_(-30.0)
        model.classifier.weight[:n] = trained.classifier.weight
        model.classifier.bias[:n] = trained.classifier.bias
    return model


def trained_accuracy(checkpoint: Path, tmp: Path, calib_num: int = 32) -> list[list[Any]]:
    """mIoU of the float PyTorch path and the fast graphs of a trained checkpoint on the
    synthetic validation set it was trained for (the same evaluator, the true labels)."""
    from atrous.config import DataConfig
    from atrous.data import build_dataset
    from atrous.evaluate import evaluate
    from atrous.export.pipeline import load_source

    net, card = load_source(checkpoint)
    data_cfg = card.provenance.notes.get("config", {}).get("data", {"kind": "synthetic"})
    data = DataConfig(**data_cfg)
    val = build_dataset(data, "val")
    calib = [build_dataset(data, "train")[i] for i in range(calib_num)]
    paths = {
        "float PyTorch (eager)": None,
        f"atrous fast fp32 (ORT), labels 1/{DEFAULT_LABEL_STRIDE}": export_fast_onnx(
            net, card, tmp / "t_fast.onnx"
        ),
        "atrous fast int8 (ORT), labels 1/1": export_fast_int8(
            net, card, tmp / "t_int8_s1.onnx", calib, label_stride=1, num=calib_num
        ),
        FAST_ORT: export_fast_int8(net, card, tmp / "t_int8.onnx", calib, num=calib_num),
        "atrous fast int8 (OpenVINO), labels 1/1": export_fast_int8(
            net, card, tmp / "t_int8_s1.xml", calib, label_stride=1, num=calib_num
        ),
        DEFAULT: export_fast_int8(net, card, tmp / "t_int8.xml", calib, num=calib_num),
    }
    rows, base = [], None
    for label, path in paths.items():
        seg = Segmenter(TorchEngine(net, 2), card) if path is None else open_fast(path, 2)
        miou = 100 * evaluate(seg, val, progress=False).miou
        base = miou if base is None else base
        rows.append([label, miou, miou - base])
    return rows


# -- accuracy ------------------------------------------------------------------------------------
def confusion_miou(pred: np.ndarray, truth: np.ndarray, classes: int) -> float:
    """Dataset-level mIoU (%) from a confusion matrix over classes present in either map."""
    index = truth.ravel().astype(np.int64) * classes + pred.ravel().astype(np.int64)
    cm = np.bincount(index, minlength=classes**2)
    cm = cm.reshape(classes, classes).astype(np.float64)
    inter = np.diag(cm)
    union = cm.sum(0) + cm.sum(1) - inter
    present = union > 0
    return float(100 * (inter[present] / union[present]).mean())


def agreement_vs_float(targets, model, card, size: int, images: int) -> list[list[Any]]:
    """Each path's masks scored against the float PyTorch path's masks (mIoU and pixel %)."""
    reference = with_input_size(Segmenter(TorchEngine(model, 2), card), size)
    photos = [synthetic_image(size, size, seed=100 + i) for i in range(images)]
    ref = [reference.predict(p).mask for p in photos]
    rows = []
    for target in targets[1:]:
        seg = with_input_size(target.open(2), size)
        masks = [seg.predict(p).mask for p in photos]
        pred, truth = (
            np.concatenate([m.ravel() for m in masks]),
            np.concatenate([r.ravel() for r in ref]),
        )
        rows.append(
            [
                target.label,
                size,
                confusion_miou(pred, truth, card.num_classes),
                100 * (pred == truth).mean(),
            ]
        )
    return rows


def synthetic_truth(size: int, seed: int, classes: int = 21) -> np.ndarray:
    """A label map of a few large overlapping shapes (objects on a background)."""
    rng = np.random.default_rng(seed)
    truth = np.zeros((size, size), np.uint8)
    for _ in range(int(rng.integers(2, 6))):
        centre = (int(rng.integers(0, size)), int(rng.integers(0, size)))
        axes = (int(rng.integers(size // 12, size // 3)), int(rng.integers(size // 12, size // 3)))
        cv2.ellipse(
            truth,
            centre,
            axes,
            float(rng.uniform(0, 180)),
            0,
            360,
            int(rng.integers(1, classes)),
            -1,
        )
    return truth


def postprocess_cost(size: int, images: int, classes: int = 21) -> list[list[Any]]:
    """mIoU of each label resolution on ideal output-stride-16 logits of synthetic label maps.

    The geometry is the Segmenter's: the image is padded to a multiple of 8, the logits
    (one-hot truth area-averaged to the OS16 grid: what a perfect network could output) cover
    the padded image, the label map at 1/stride is repeated and cropped back. Only the
    postprocessing differs between rows.
    """
    truths = [synthetic_truth(size, seed=i, classes=classes) for i in range(images)]
    padded = -(-size // 8) * 8
    low_size = (padded - 1) // 16 + 1
    strides = (1, 2, 4, 8)
    results: dict[int, list[np.ndarray]] = {s: [] for s in strides}
    for truth in truths:
        canvas = np.zeros((padded, padded), np.uint8)
        canvas[:size, :size] = truth
        onehot = torch.from_numpy(np.eye(classes, dtype=np.float32)[canvas]).permute(2, 0, 1)
        logits = F.adaptive_avg_pool2d(onehot[None], low_size)
        for stride in strides:
            side = padded // stride
            up = F.interpolate(logits, size=(side, side), mode="bilinear", align_corners=False)
            labels = up.argmax(1)[0].numpy().astype(np.uint8)
            labels = np.repeat(np.repeat(labels, stride, 0), stride, 1)[:size, :size]
            results[stride].append(labels)
    truth_all = np.concatenate([t.ravel() for t in truths])
    full = np.concatenate([m.ravel() for m in results[1]])
    full_miou = confusion_miou(full, truth_all, classes)
    rows = []
    for stride, masks in results.items():
        pred = np.concatenate([m.ravel() for m in masks])
        miou = confusion_miou(pred, truth_all, classes)
        rows.append([f"1/{stride}", miou, miou - full_miou, 100 * (pred == full).mean()])
    return rows


# -- markdown ------------------------------------------------------------------------------------
def md_table(columns: list[str], rows: list[list[Any]]) -> str:
    def cell(v: Any) -> str:
        return f"{v:.2f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)


def latency_rows(result: BenchResult) -> list[list[Any]]:
    rows = []
    for r in result.records:
        if r.mode != "network":
            continue
        e2e = result.find(r.label, "end_to_end", r.size, r.threads)
        eager = result.find("torch eager", "network", r.size, r.threads)
        rows.append(
            [r.label, r.size, r.threads, r.median_ms, r.p90_ms, e2e.median_ms, e2e.p90_ms]
            + [eager.median_ms / e2e.median_ms, r.gflops or "-"]
        )
    return rows


def verdict(
    result: BenchResult,
    alone: BenchResult,
    post: list[list[Any]],
    trained: list[list[Any]],
    size: int,
) -> list[str]:
    """The three targets (<= 15 ms end to end, >= 4x eager, <= 0.5 mIoU) against this run."""
    try:
        fast = result.find(DEFAULT, "end_to_end", size, 2)
        solo = alone.find(DEFAULT, "end_to_end", size, 2)
        trained_solo = next(
            (
                r
                for r in alone.records
                if r.label == TRAINED
                and r.mode == "end_to_end"
                and r.size == size
                and r.threads == 2
            ),
            None,
        )
        eager = result.find("torch eager", "network", size, 2)
    except KeyError:
        return []
    ok = {True: "met", False: "MISSED"}
    lines = [
        f"## Targets ({size}x{size}, 2 threads, this run)",
        "",
        f"- end to end <= 15 ms: {solo.median_ms:.1f} ms median alone (back to back), "
        f"{fast.median_ms:.1f} ms interleaved with the other paths (random weights: the "
        f"tail's worst case) -> {ok[solo.median_ms <= 15]}",
        f"- >= 4x faster than eager network: {eager.median_ms / fast.median_ms:.2f}x "
        f"-> {ok[eager.median_ms / fast.median_ms >= 4]}",
    ]
    if trained_solo is not None:
        lines.append(
            f"- the same on trained weights: {trained_solo.median_ms:.1f} ms median alone -> "
            f"{ok[trained_solo.median_ms <= 15]}"
        )
    drop = next((-r[2] for r in trained if r[0] == DEFAULT), None)
    if drop is not None:
        lines.append(
            f"- <= 0.5 mIoU from float: the default path scores {drop:.2f} points below float "
            f"PyTorch on the trained checkpoint -> {ok[drop <= 0.5]}"
        )
    else:
        cost = next(r[2] for r in post if r[0] == f"1/{DEFAULT_LABEL_STRIDE}")
        lines.append(
            f"- <= 0.5 mIoU from float: labels at 1/{DEFAULT_LABEL_STRIDE} cost {-cost:.2f} "
            "points on ideal logits; int8 not measured (no --checkpoint)"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--sizes", default="513,257")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--images", type=int, default=8, help="images for the accuracy checks")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument(
        "--checkpoint", type=Path, help="a trained checkpoint (e.g. demo/best.pt) for true mIoU"
    )
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    threads = [int(t) for t in args.threads.split(",")]
    torch.manual_seed(0)
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    load_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="atrous-fast-") as tmp:
        targets, model, card = build_targets(Path(tmp), sizes)
        result = benchmark(
            targets, sizes=sizes, threads=threads, runs=args.runs, warmup=args.warmup
        )
        result.to_json(args.out.with_suffix(".json"))
        # the default path alone, back to back: what a process serving only this model sees
        # (in the interleaved run above, 4 x 8 - 1 other configurations run between two of its
        # samples and take its weights and buffers out of the caches); with --checkpoint also
        # on trained weights, whose label maps set the cost of the host-side tail
        default = next(t for t in targets if t.label == DEFAULT)
        alone_targets = [default]
        if args.checkpoint:
            photos = [synthetic_image(s, s, seed=i) for i, s in enumerate(sizes * 8)]
            trained_path = export_fast_int8(
                trained_at_21_classes(args.checkpoint), card, Path(tmp) / "t21.xml", photos
            )
            alone_targets.append(
                BenchTarget(TRAINED, lambda t: open_fast(trained_path, t), trained_path)
            )
        alone = benchmark(
            alone_targets, sizes=sizes, threads=[2], runs=args.runs, warmup=args.warmup
        )
        accuracy = [
            row for s in sizes for row in agreement_vs_float(targets, model, card, s, args.images)
        ]
        profiles = {
            DEFAULT: profile_segmenter(
                default.open(2), model_file=default.model_file, size=sizes[0], runs=args.runs
            ),
            "ORT fp32 (plain export)": profile_segmenter(
                targets[1].open(2), model_file=targets[1].model_file, size=sizes[0], runs=args.runs
            ),
        }
        trained = trained_accuracy(args.checkpoint, Path(tmp)) if args.checkpoint else []
    post = postprocess_cost(sizes[0], 4 * args.images)
    command = "PYTHONPATH=src python benchmarks/fast_path.py " + " ".join(sys.argv[1:])
    load = f"Load average at start / end: {load_start:.1f} / {os.getloadavg()[0]:.1f} on "
    load += f"{os.cpu_count()} cores; CPU time stolen by the hypervisor during the timed runs: "
    load += f"{result.machine.get('cpu_stolen_percent', 0.0)}%."
    parts = [
        "# The fast CPU path: deeplabv3_mnv2_dm05_os16",
        "",
        f"Generated {started} by `{command}` "
        f"({args.runs} runs after {args.warmup} warm-up runs, all paths interleaved; "
        f"{result.machine.get('processor')}, torch {result.machine.get('torch')}, "
        f"onnxruntime {result.machine.get('onnxruntime')}). {load}",
        "",
        "## Latency (median / p90 ms; end to end = JPEG file in, mask at the original size out)",
        "",
        md_table(
            ["path", "size", "threads", "network ms", "p90", "end-to-end ms", "p90"]
            + ["eager network / this e2e", "GFLOP/s"],
            latency_rows(result),
        ),
        "",
        "## The default path alone, back to back (same run, after the table above)",
        "",
        md_table(
            ["path", "size", "threads", "network ms", "p90", "end-to-end ms", "p90"],
            [
                [r.label, r.size, r.threads, r.median_ms, r.p90_ms]
                + [alone.find(r.label, "end_to_end", r.size, r.threads).median_ms]
                + [alone.find(r.label, "end_to_end", r.size, r.threads).p90_ms]
                for r in alone.records
                if r.mode == "network"
            ],
        ),
        "",
        "## Accuracy against the float PyTorch path (random diversified weights, synthetic photos)",
        "",
        md_table(["path", "size", "mIoU vs float %", "pixel agreement %"], accuracy),
        "",
    ]
    if trained:
        parts += [
            f"## Accuracy on a trained model (`{args.checkpoint}`, its synthetic validation set,"
            " dataset-level mIoU from the one evaluator)",
            "",
            md_table(["path", "val mIoU %", "delta vs float"], trained),
            "",
        ]
    parts += [
        f"## Cost of the reduced-resolution argmax alone ({sizes[0]}x{sizes[0]}, ideal OS16 logits"
        f" of {4 * args.images} synthetic label maps)",
        "",
        md_table(["labels at", "mIoU vs truth %", "delta vs 1/1", "agreement with 1/1 %"], post),
        "",
        f"## Where the time goes ({sizes[0]}x{sizes[0]}, 2 threads, ms per run)",
        "",
    ]
    for label, prof in profiles.items():
        parts += [
            f"**{label}**: total {prof.total_ms:.1f} ms, blocks sum {prof.blocks_sum_ms:.1f} ms",
            "",
            md_table(["block", "ms"], [[b, ms] for b, ms in prof.blocks.items()]),
            "",
        ]
    parts += verdict(result, alone, post, trained, sizes[0]) + ["", NOTES]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(parts) + "\n")
    print(args.out.read_text())


if __name__ == "__main__":
    main()
