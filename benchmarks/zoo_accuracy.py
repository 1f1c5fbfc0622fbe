"""Float against fast int8 accuracy, one model per backbone, each trained on the synthetic set by
the demo recipe within a time budget, scored by the one evaluator on the whole validation set.

Per model: ``atrous train demo model.name=NAME train.max_minutes=M`` (which writes the int8 fast
graph beside best.pt, calibrated on training images), then ``evaluate`` on the validation
scenes with PyTorch (float) and with the fast graph at its default label stride (what
``atrous predict best.pt`` runs) and at full resolution (the graph alone). Run::

    PYTHONPATH=src python benchmarks/zoo_accuracy.py --minutes 4

Heavy backbones (ResNet, Xception) train on smaller 128 px scenes so that their budget holds
several epochs; the table says which. The results go to benchmarks/results/zoo_accuracy.md.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from atrous.bench.latency import cpu_model
from atrous.data import build_dataset
from atrous.demo import demo_config
from atrous.evaluate import evaluate
from atrous.fastpath import label_stride_for
from atrous.fastpath.deploy import fast_graph_paths
from atrous.segmenter import Segmenter
from atrous.train import train

OUT = Path(__file__).parent / "results" / "zoo_accuracy.md"
MODELS = (  # one per backbone
    "deeplabv3_mnv2_dm05_os16",
    "lraspp_mobilenet_v3_large_tv",
    "deeplabv3_shufflenetv2_x1_os16",
    "deeplabv3_resnet50_tv",
    "deeplabv3plus_xception65_os16",
)
DEMO = "deeplabv3_mnv2_dm05_os16"  # the demo's own model keeps its 192 px scenes
SMALL = ["model.input_size=128", "data.image_size=128", "data.crop_size=128"]


def overrides(name: str, minutes: float) -> list[str]:
    """The demo recipe for ``name`` within ``minutes`` (other models on 128 px scenes: more
    epochs in the budget for the slower backbones)."""
    out = [f"model.name={name}", f"train.max_minutes={minutes}", "train.val_every=1"]
    return out + ([] if name == DEMO else SMALL)


def score(name: str, minutes: float, root: Path) -> dict[str, Any]:
    """Train ``name`` in the demo recipe, then float / fast int8 mIoU on the validation set."""
    config = demo_config(root / name, overrides(name, minutes))
    started = time.perf_counter()
    result = train(config, progress=False)
    took = (time.perf_counter() - started) / 60
    val = build_dataset(config.data, "val")
    best = result.best_checkpoint
    graph = next((p for p in fast_graph_paths(best) if p.is_file()), None)
    row: dict[str, Any] = {
        "model": name,
        "scenes": config.data.image_size,
        "epochs": result.epochs_run,
        "minutes": took,
        "degenerate": result.degenerate,
    }
    plain = Segmenter.from_file(best, engine="torch")
    row["float"] = evaluate(plain, val, progress=False).miou
    if graph is None:
        row["note"] = "no fast graph written"
        return row
    fast = Segmenter.from_file(graph)
    row["int8"] = evaluate(fast, val, progress=False).miou
    row["int8_full"] = evaluate(fast.at_full_resolution(), val, progress=False).miou
    return row


def report(rows: list[dict[str, Any]], command: str, minutes: float, load: float) -> str:
    """The results file's markdown."""
    lines = [
        "| model | scenes px | epochs | train min | float mIoU | int8, labels 1/2 | int8, labels "
        "1/1 | default path (labels by size) | default - float (pts) | within 0.5 | learned |",
        "|" + "---|" * 11,
    ]
    for r in rows:
        learned = "no (one class)" if r.get("degenerate") else "yes"
        if "int8" not in r:
            lines.append(
                f"| {r['model']} | {r['scenes']} | {r['epochs']} | - | "
                f"{r['float']:.4f} | {r.get('note', '-')} | | | | | {learned} |"
            )
            continue
        stride = label_stride_for(r["scenes"])
        default = r["int8_full"] if stride == 1 else r["int8"]
        d = 100 * (default - r["float"])
        ok = "yes" if abs(d) <= 0.5 else "NO"
        lines.append(
            f"| {r['model']} | {r['scenes']} | {r['epochs']} | {r['minutes']:.1f} | "
            f"{r['float']:.4f} | {r['int8']:.4f} | {r['int8_full']:.4f} | {default:.4f} "
            f"(1/{stride}) | {d:+.2f} | {ok} | {learned} |"
        )
    return "\n".join(
        [
            "# Float against fast int8, one trained model per backbone",
            "",
            f"Generated {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} by `{command}` "
            f"({cpu_model()}, torch {torch.__version__}, load at start {load:.1f}). Each model: "
            f"the demo recipe (synthetic scenes, from scratch) within {minutes:g} minutes "
            "(the train min column: a row kept from an earlier run had its own budget; an "
            "epoch is never cut, so a slow backbone runs one whole epoch; the demo's own budget "
            "is 9; the demo's model on its 192 px scenes, the others on "
            "128 px scenes); mIoU by `atrous.evaluate` on the 100 validation scenes. The int8 "
            "graph is the one `atrous train` wrote beside best.pt (calibrated on 32 training "
            "scenes); the default path (what `atrous predict best.pt` runs) labels at 1/2, or at "
            "full resolution for models trained under 256 px (`label_stride_for`). Rows "
            "measured in "
            "earlier runs of the same command are kept (results/zoo_accuracy.json).",
            "",
            *lines,
            "",
        ]
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=4.0)
    parser.add_argument("--models", help="comma-separated zoo names (default: one per backbone)")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--report", action="store_true", help="rewrite the table from the JSON")
    args = parser.parse_args(argv)
    names = [] if args.report else (args.models.split(",") if args.models else list(MODELS))
    command = "PYTHONPATH=src python benchmarks/zoo_accuracy.py --minutes " + f"{args.minutes:g}"
    load = os.getloadavg()[0]
    store = args.out.with_suffix(".json")
    kept = json.loads(store.read_text()) if store.is_file() else {}
    with tempfile.TemporaryDirectory(prefix="atrous-acc-") as tmp:
        for name in names:
            print(f"[{time.strftime('%H:%M:%S')}] {name}", flush=True)
            kept[name] = score(name, args.minutes, Path(tmp))
            print(kept[name], flush=True)
            store.write_text(json.dumps(kept, indent=1))
            args.out.write_text(report(ordered(kept), command, args.minutes, load))
    args.out.write_text(report(ordered(kept), command, args.minutes, load))
    print(args.out.read_text())


def ordered(kept: dict[str, Any]) -> list[dict[str, Any]]:
    """The stored rows, the default models first in their order."""
    return [kept[n] for n in MODELS if n in kept] + [r for n, r in kept.items() if n not in MODELS]


if __name__ == "__main__":
    main()
