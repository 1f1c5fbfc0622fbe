"""The thread default under load: eager and fast-path latency at 1 and 2 threads, on a quiet
machine and beside a competing busy process, with OpenMP's default (spinning) wait policy and
with the passive one atrous picks when the machine is already busy. One run, interleaved.

Regenerate ``benchmarks/results/threads_under_load.md``::

    PYTHONPATH=src python benchmarks/threads_under_load.py --seconds 6

Why: libgomp's idle threads spin for a while waiting for the next parallel region. When another
process holds one of two cores, the spinning thread and the thread doing the work take turns on
the remaining core, and every one of the hundreds of per-operator barriers of an eager MobileNet
waits for a scheduler tick. The wait policy is read once, when PyTorch loads libgomp, so each
setting runs in its own process.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

NAME = "deeplabv3_mnv2_dm05_os16"
RESULTS = Path(__file__).parent / "results" / "threads_under_load.md"


def _measure(model_dir: str, size: int, seconds: float) -> dict[str, float]:
    """In this process: median ms of the eager network and the fast path, 1 and 2 threads."""
    import numpy as np
    import torch  # before atrous: `import atrous` would otherwise choose the passive policy

    from atrous.models import get_model
    from atrous.segmenter import Segmenter

    torch.manual_seed(0)
    model = get_model(NAME).eval()
    x = torch.randn(1, 3, size, size)
    image = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
    fast = {t: Segmenter.from_file(Path(model_dir) / "fast-int8.xml", threads=t) for t in (1, 2)}
    out: dict[str, float] = {}
    with torch.inference_mode():
        for threads in (1, 2):
            torch.set_num_threads(threads)
            model(x)
            fast[threads].predict(image)
            eager, path = [], []
            deadline = time.perf_counter() + seconds
            while time.perf_counter() < deadline or len(eager) < 3:
                start = time.perf_counter()
                model(x)
                eager.append(time.perf_counter() - start)
                start = time.perf_counter()
                fast[threads].predict(image)
                path.append(time.perf_counter() - start)
            out[f"eager_{threads}"] = 1000 * statistics.median(eager)
            out[f"fast_{threads}"] = 1000 * statistics.median(path)
    return out


def _build(model_dir: Path) -> None:
    """A random-weight dm0.5 checkpoint and its int8 fast graph (calibrated on synthetic scenes)."""
    from atrous.checkpoint import save_checkpoint
    from atrous.config import DataConfig
    from atrous.data import build_dataset
    from atrous.fastpath import export_fast
    from atrous.models import default_card, get_model

    save_checkpoint(model_dir / "model.pt", get_model(NAME), default_card(NAME))
    data = build_dataset(DataConfig(kind="synthetic", val_size=40), "val")
    export_fast(
        model_dir / "model.pt",
        model_dir / "fast-int8.xml",
        precision="int8",
        calibration=[data[i] for i in range(40)],
    )


def _child(policy: str | None, model_dir: Path, size: int, seconds: float) -> dict[str, float]:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    env["ATROUS_OMP_WAIT_POLICY"] = policy or "default"
    if policy:
        env["OMP_WAIT_POLICY"] = policy
    here = str(Path(__file__).parent)
    code = (
        f"import json, sys; sys.path.insert(0, {here!r}); import threads_under_load as t; "
        f"print(json.dumps(t._measure({str(model_dir)!r}, {size}, {seconds})))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=257)
    parser.add_argument("--seconds", type=float, default=6.0)
    args = parser.parse_args()
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    cpu = next((ln.split(":", 1)[1].strip() for ln in cpuinfo if "model name" in ln), "unknown")
    rows = []
    with tempfile.TemporaryDirectory(prefix="atrous-threads-") as tmp:
        model_dir = Path(tmp)
        _build(model_dir)
        for load in ("quiet", "busy"):
            busy = None
            if load == "busy":
                busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
                time.sleep(0.5)
            try:
                for policy in (None, "PASSIVE"):
                    figures = _child(policy, model_dir, args.size, args.seconds)
                    rows.append((load, policy or "default (spin)", figures))
                    print(load, policy, figures, flush=True)
            finally:
                if busy is not None:
                    busy.kill()
                    busy.wait()
    lines = [
        "# The thread default under load",
        "",
        f"CPU: {cpu}, {os.cpu_count()} cores. dm0.5 ({NAME}, random weights) at "
        f"{args.size}x{args.size}, median ms over {args.seconds:.0f} s per cell, eager network "
        "and the int8 fast path end to end (uint8 image in, mask out) interleaved. 'busy' = "
        "one other process spinning on one core throughout.",
        "",
        "Command: `PYTHONPATH=src python benchmarks/threads_under_load.py "
        f"--size {args.size} --seconds {args.seconds:g}`",
        "",
        "| machine | OpenMP wait | eager 1 thr | eager 2 thr | fast 1 thr | fast 2 thr |",
        "|---|---|---|---|---|---|",
    ]
    for load, policy, f in rows:
        lines.append(
            f"| {load} | {policy} | {f['eager_1']:.1f} | {f['eager_2']:.1f} | "
            f"{f['fast_1']:.1f} | {f['fast_2']:.1f} |"
        )
    RESULTS.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
