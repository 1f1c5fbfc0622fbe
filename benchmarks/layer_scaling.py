"""Are the int8 dm0.5 graph's 1/2-resolution layers held back by memory traffic or by their
kernels? Their time per pixel at 513 px against 257 px (a quarter of the pixels: every tensor
of the block then fits in the 2 MB L2 of each core), and each layer on AMX against AVX-512
VNNI alone (oneDNN's ``ONEDNN_MAX_CPU_ISA``, set before OpenVINO loads, in a process per ISA).

    PYTHONPATH=src python benchmarks/layer_scaling.py [--runs 200]

Random (diversified) weights, the int8 fast graph from ``export_fast_int8``, 2 threads,
OpenVINO's per-node counters (``atrous.bench.profile``). If a layer were bound by DRAM
traffic, its time per pixel would fall when its tensors fit in cache; if the AMX tile kernels
were the limit on layers with few channels, the VNNI kernels would beat them there. Writes
benchmarks/results/layer_scaling.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _report import write_report  # noqa: E402
from atrous.bench.latency import cpu_model  # noqa: E402
from atrous.bench.profile import open_profiled, profile_segmenter  # noqa: E402
from label_handoff import build  # noqa: E402

OUT = Path(__file__).parent / "results" / "layer_scaling.md"
MODEL = "deeplabv3_mnv2_dm05_os16"
# the stem and the first two inverted-residual blocks: their outputs are at 1/2 of the input
HALF = ("features.0/", "features.1/", "features.2/conv/conv.0/", "features.2/conv/conv.1/")
ISAS = ("AVX512_CORE_AMX", "AVX512_CORE_VNNI")


def layer_times(graph: Path, size: int, runs: int) -> tuple[dict[str, float], float]:
    """Per convolution node (short name) its mean ms at ``size``, and the network's node sum."""
    seg, model_file = open_profiled(graph, engine="openvino", threads=2)
    prof = profile_segmenter(seg, model_file=model_file, size=size, runs=runs)
    convs = {
        op.name.split("/backbone/")[-1].replace("/WithoutBiases", ""): op.ms
        for op in prof.ops
        if "Convolution" in op.op_type and "/backbone/" in op.name
    }
    return convs, sum(op.ms for op in prof.ops)


def child(graph: str, runs: int) -> None:
    """One ISA's profiles (this process's ONEDNN_MAX_CPU_ISA) at 513 and 257, as JSON."""
    result = {str(size): layer_times(Path(graph), size, runs) for size in (513, 257)}
    print(json.dumps(result))


def profiles(graph: Path, runs: int) -> dict[str, dict]:
    """Each ISA's profiles, each in a fresh process (the ISA is fixed when oneDNN loads)."""
    found = {}
    for isa in ISAS:
        env = {**os.environ, "ONEDNN_MAX_CPU_ISA": isa}
        command = [sys.executable, __file__, "--runs", str(runs), "--child", str(graph)]
        proc = subprocess.run(command, env=env, check=True, capture_output=True, text=True)
        found[isa] = json.loads(proc.stdout.strip().splitlines()[-1])
    return found


def report(found: dict[str, dict], runs: int) -> str:
    """Write the markdown table: the 1/2-resolution layers per pixel at both sizes, both ISAs."""
    amx, vnni = found[ISAS[0]], found[ISAS[1]]
    pixels = (513 / 257) ** 2
    rows = []
    for name, big in amx["513"][0].items():
        if not name.startswith(HALF):
            continue
        small, big_vnni = amx["257"][0][name], vnni["513"][0][name]
        rows.append(
            f"| {name} | {big:.3f} | {small:.3f} | {big / small / pixels:.2f} | "
            f"{big_vnni:.3f} | {big / big_vnni:.2f}x |"
        )
    about = (
        f"({cpu_model()}; dm0.5 int8 fast graph, random weights, 2 threads, OpenVINO counters, "
        f"{runs} runs). Time per pixel at 513 over time per pixel at 257 is 1.00 for a layer "
        "whose cost does not depend on where its tensors live; a layer held back by DRAM "
        "traffic would show well above 1 (at 257 the block's largest tensor, 48 channels at "
        "129 x 129, is 0.8 MB, inside each core's 2 MB L2). The last columns run the same graph "
        "with oneDNN limited to AVX-512 VNNI (no AMX tiles). Sum of all nodes at 513: AMX "
        f"{amx['513'][1]:.2f} ms, VNNI only {vnni['513'][1]:.2f} ms; at 257: AMX "
        f"{amx['257'][1]:.2f} ms, VNNI only {vnni['257'][1]:.2f} ms."
    )
    columns = ["layer", "513 ms (AMX)", "257 ms (AMX)", "per-pixel 513 / 257",
               "513 ms (VNNI only)", "AMX / VNNI"]  # fmt: skip
    title = "The 1/2-resolution layers: memory or kernels?"
    return write_report(OUT, title, about, columns, "lrrrrr", rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.runs)
        return
    with tempfile.TemporaryDirectory(prefix="atrous-scaling-") as tmp:
        graph, _ = build(MODEL, 513, Path(tmp))
        found = profiles(graph, args.runs)
    print(report(found, args.runs))


if __name__ == "__main__":
    main()
