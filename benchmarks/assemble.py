"""Assemble BENCHMARKS.md from the per-topic results in benchmarks/results/*.md.

Each topic's script writes its own results file (with the command that produced it); this script
puts them under one index, after the headline table of ``results/summary.md``. Run:
``python benchmarks/assemble.py``.
"""

from __future__ import annotations

from pathlib import Path

from atrous._atomic import atomic_write_text

ROOT = Path(__file__).resolve().parent
ORDER = [
    "foundation",
    "training",
    "engines",
    "tflite",
    "fast_path",
    "zoo_fast",
    "zoo_fast_dm05",
    "label_step",
    "label_handoff",
    "zoo_accuracy",
    "channel_padding",
    "compression",
    "serve",
    "serve_load",
    "upload_decode",
    "threads_under_load",
    "amp",
    "video_stream",
    "ray_batch",
    "ray_resume",
    "block_variants",
    "fast_floor",
    "layer_scaling",
    "seed_claims",
    "engines_by_backbone",
    "hardening",
]

HEADER = """# Benchmarks

Every table below comes from a script in `benchmarks/` (the command is given with each table),
run on one of this project's 2-core machines; each table names its machine. The 2026-11-28
tables (training, fast path, compression) ran on an Intel Xeon at 2.5 GHz with AVX-512 and
AVX-512 VNNI (int8 dot products in hardware); the earlier ones (foundation, engines, serve,
hardening) on an AMD EPYC (AVX2, no VNNI), where int8 pays far less; the 2026-12-04 evening
tables (zoo fast path, dm0.5 against LiteRT, accuracy per backbone) on a Xeon with AVX-512 VNNI
and AMX (int8 and bf16 matrix tiles), where OpenVINO's int8 1x1 convolutions run on AMX. Systems
are compared as ratios within one interleaved run; tests never assert on wall time. Tables
marked with a load average above 2 were taken while other jobs shared the two cores: compare
their ratios, not their milliseconds. On 2026-11-28 the Xeon VM's speed also drifted by up to
1.5x from one minute to the next with no hypervisor steal (the same eager network took 73-112
ms), and late that night the hypervisor took 1-23% of the CPU during some runs (each fast-path
table's header gives its share): the eager row of each table is that run's speed reference.

SUMMARY
"""


def main(summary: str = "") -> None:
    parts = [HEADER.replace("SUMMARY", summary)]
    for name in ORDER:
        path = ROOT / "results" / f"{name}.md"
        if not path.exists():
            continue
        text = path.read_text(encoding="utf-8").strip()
        # demote the topic's headings one level under this document's title
        lines = [("#" + line) if line.startswith("#") else line for line in text.splitlines()]
        parts.append("\n".join(lines))
    atomic_write_text(ROOT.parent / "BENCHMARKS.md", "\n\n".join(parts) + "\n")


if __name__ == "__main__":
    import sys

    # the headline table lives in results/summary.md (edited by hand from the topics below)
    summary_file = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "results" / "summary.md"
    main(summary_file.read_text(encoding="utf-8"))
