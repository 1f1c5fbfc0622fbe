"""This machine's roofs: peak multiply-add rate and memory bandwidth, measured once and cached.

Peak compute is the best of a few large fp32 matrix products (torch, at the profile's threads)
and of int8 products on each int8 runtime installed: ONNX Runtime's uint8 ``MatMulInteger``
and OpenVINO's quantized matrix product (on a CPU with AMX, OpenVINO's int8 kernels ran
794 GMAC/s at 1024 x 1024, 2 threads, where MatMulInteger ran 91); bandwidth is the best
of a few copies of an array far larger than the caches (bytes read plus bytes written). They
are cached as JSON under ``$ATROUS_CACHE/peaks``, keyed by CPU model and threads, so a profile
reads them instead of spending a few seconds each time; ``atrous profile MODEL --measure-peaks``
measures them again (after a BIOS, VM or load change).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from time import perf_counter

import numpy as np
import torch

from atrous._atomic import atomic_write_text
from atrous.runtimes.auto import cache_dir

__all__ = ["Peaks", "cpu_model", "load_peaks", "measure_peaks", "peaks_path", "REMEASURE"]

REMEASURE = "atrous profile MODEL --measure-peaks"


@dataclass
class Peaks:
    """Measured roofs of one CPU at a thread count: multiply-adds per second (fp32, and int8
    when measured) and bytes per second moved to and from memory."""

    cpu: str
    threads: int
    fp32_gmacs: float
    bandwidth_gbs: float
    int8_gmacs: float | None = None
    load: float | None = None  # 1-minute load average while measuring

    def gmacs(self, precision: str = "fp32") -> float:
        """Peak multiply-adds (1e9/s) at ``precision``; int8 falls back to fp32 if unmeasured."""
        if precision == "int8" and self.int8_gmacs:
            return self.int8_gmacs
        return self.fp32_gmacs

    def balance(self, precision: str = "fp32") -> float:
        """Machine balance: the intensity (MAC/byte) where a layer stops being bandwidth-bound."""
        return self.gmacs(precision) / self.bandwidth_gbs

    def describe(self) -> str:
        """One line: the roofs and how to measure them again."""
        int8 = f", int8 {self.int8_gmacs:.1f} GMAC/s" if self.int8_gmacs else ""
        load = f", measured at load {self.load:.1f}" if self.load is not None else ""
        return (
            f"peaks on {self.cpu}, {self.threads} threads: fp32 {self.fp32_gmacs:.1f} GMAC/s"
            f"{int8}, memory {self.bandwidth_gbs:.1f} GB/s{load} (re-measure: {REMEASURE})"
        )


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (or the platform's processor string)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or "unknown CPU"


def peaks_path(threads: int, cpu: str | None = None, root: Path | None = None) -> Path:
    """The cache file of (CPU model, threads) under ``root`` (default ``$ATROUS_CACHE/peaks``)."""
    slug = re.sub(r"[^A-Za-z0-9]+", "-", cpu or cpu_model()).strip("-").lower()[:80]
    return (root or cache_dir() / "peaks") / f"{slug}-t{threads}.json"


def _best_seconds(fn: Callable[[], object], repeats: int) -> float:
    """Fastest of ``repeats`` calls of ``fn`` after one warm-up call."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = perf_counter()
        fn()
        best = min(best, perf_counter() - t0)
    return best


def _fp32_gmacs(threads: int, n: int = 1024, repeats: int = 10) -> float:
    """Best fp32 matrix-product rate (n^3 multiply-adds per product) at ``threads``."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        a, b = torch.randn(n, n), torch.randn(n, n)
        return n**3 / _best_seconds(lambda: torch.mm(a, b), repeats) / 1e9
    finally:
        torch.set_num_threads(before)


def _int8_gmacs(threads: int, n: int = 1024, repeats: int = 10) -> float | None:
    """Best uint8 MatMulInteger rate on ONNX Runtime, or None without onnxruntime / onnx."""
    try:
        import onnxruntime as ort
        from onnx import TensorProto, helper
    except ImportError:
        return None
    graph = helper.make_graph(
        [helper.make_node("MatMulInteger", ["a", "b"], ["y"])],
        "peak",
        [helper.make_tensor_value_info(x, TensorProto.UINT8, [n, n]) for x in "ab"],
        [helper.make_tensor_value_info("y", TensorProto.INT32, [n, n])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    session = ort.InferenceSession(
        model.SerializeToString(),
        opts,
        providers=["CPUExecutionProvider"],
    )
    rng = np.random.default_rng(0)
    feed = {x: rng.integers(0, 255, (n, n), dtype=np.uint8) for x in "ab"}
    return n**3 / _best_seconds(lambda: session.run(None, feed), repeats) / 1e9


def _openvino_int8(threads: int, n: int) -> tuple | None:
    """A compiled OpenVINO model of one int8 matrix product (uint8 activations times int8
    weights, as NNCF quantizes them), its input and the compiled model; None without
    OpenVINO."""
    try:
        import openvino as ov
        from openvino import opset13 as ops
    except ImportError:
        return None
    from atrous.runtimes.openvino_engine import cpu_config

    x = ops.parameter([n, n], ov.Type.f32)
    low, high = ops.constant(np.float32(0)), ops.constant(np.float32(255))
    rng = np.random.default_rng(0)
    w = rng.integers(-127, 128, (n, n)).astype(np.float32)
    wlow, whigh = ops.constant(np.float32(-127)), ops.constant(np.float32(127))
    weights = ops.fake_quantize(ops.constant(w), wlow, whigh, wlow, whigh, 255)
    product = ops.matmul(ops.fake_quantize(x, low, high, low, high, 256), weights, False, True)
    compiled = ov.Core().compile_model(ov.Model([product], [x]), "CPU", cpu_config(threads))
    feed = rng.integers(0, 255, (n, n)).astype(np.float32)
    return compiled.create_infer_request(), feed, compiled


def _openvino_int8_gmacs(threads: int, n: int = 1024, repeats: int = 10) -> float | None:
    """Best rate of OpenVINO's int8 matrix product (its input quantizer included), or None
    without OpenVINO."""
    built = _openvino_int8(threads, n)
    if built is None:
        return None
    request, feed, _ = built
    return n**3 / _best_seconds(lambda: request.infer({0: feed}), repeats) / 1e9


def _bandwidth_gbs(threads: int, megabytes: int = 256, repeats: int = 5) -> float:
    """Best copy rate of a ``megabytes`` float32 array (read + write bytes per second)."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        src = torch.ones(megabytes * 2**20 // 4)
        dst = torch.empty_like(src)
        seconds = _best_seconds(lambda: dst.copy_(src), repeats)
        return 2 * src.numel() * 4 / seconds / 1e9
    finally:
        torch.set_num_threads(before)


def measure_peaks(threads: int, sizes: tuple[int, ...] = (512, 1024)) -> Peaks:
    """Measure this machine's roofs at ``threads`` (a few seconds): the best over a few matrix
    sizes, since one size can fall between cache levels or meet a busy moment."""
    runs = [rate(threads, n) for rate in (_int8_gmacs, _openvino_int8_gmacs) for n in sizes]
    int8 = [r for r in runs if r is not None]
    return Peaks(
        cpu_model(),
        threads,
        max(_fp32_gmacs(threads, n) for n in sizes),
        _bandwidth_gbs(threads),
        max(int8) if int8 else None,
        os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    )


def load_peaks(
    threads: int,
    *,
    remeasure: bool = False,
    measure: Callable[[int], Peaks] = measure_peaks,
    root: Path | None = None,
) -> Peaks:
    """The cached roofs for this CPU and ``threads``; measured (and cached) when missing,
    unreadable, or ``remeasure`` is asked."""
    path = peaks_path(threads, root=root)
    if not remeasure and path.is_file():
        try:
            data = json.loads(path.read_text(encoding="utf-8")[:10_000])
            return Peaks(**data)
        except (ValueError, TypeError):
            pass  # a damaged cache entry is measured again
    peaks = measure(threads)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(asdict(peaks), indent=2) + "\n")
    return peaks
