"""Kill ``atrous predict --ray`` midway (SIGKILL: driver, raylet and actors), re-run it, and check
that no image is lost or written twice and that every mask equals plain ``atrous predict``'s.

Regenerate ``benchmarks/results/ray_resume.md``::

    PYTHONPATH=src python benchmarks/ray_resume.py --images 500
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

import atrous  # noqa: F401  (passive OpenMP wait policy before torch loads)
from atrous.export.pipeline import load_source
from atrous.fastpath import export_fast_onnx

NAME = "deeplabv3_mnv2_dm05_os16"
RESULT = Path(__file__).parent / "results" / "ray_resume.md"


def write_images(folder: Path, count: int) -> None:
    """``count`` small JPEGs of two sizes with shapes on texture."""
    rng = np.random.default_rng(2)
    folder.mkdir(parents=True)
    for i in range(count):
        h, w = (240, 320) if i % 2 else (200, 300)
        image = cv2.GaussianBlur(rng.integers(0, 256, (h, w, 3), np.uint8), (0, 0), 2)
        cv2.circle(image, (40 + i % 200, h // 2), 50, (200, 90, 30), -1)
        cv2.imwrite(str(folder / f"img{i:04d}.jpg"), image)


def predict(model: Path, images: Path, out: Path, *extra: str) -> subprocess.Popen:
    """Start ``atrous predict`` in its own session (so a kill reaches everything it started)."""
    command = [
        sys.executable,
        "-m",
        "atrous",
        "predict",
        str(model),
        str(images),
        "--out",
        str(out),
    ]
    command += ["--engine", "onnxruntime", *extra]
    log = open(out.parent / f"{out.name}.log", "ab")  # noqa: SIM115 (closed with the process)
    return subprocess.Popen(command, stdout=log, stderr=log, start_new_session=True)


def session_members(sid: int) -> list[int]:
    """Process ids in session ``sid`` (the killed run's raylet, GCS and actors)."""
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.getsid(int(entry.name)) == sid:
                    members.append(int(entry.name))
            except (ProcessLookupError, PermissionError):
                pass
    return members


def masks(folder: Path) -> dict[str, np.ndarray]:
    return {p.name: np.asarray(Image.open(p)) for p in folder.glob("*.png")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--kill-after", type=int, default=150, help="masks on disk before SIGKILL")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        net, card = load_source(NAME)
        model = export_fast_onnx(net, card, root / "fast.onnx")
        write_images(root / "images", args.images)
        plain = predict(model, root / "images", root / "plain", "--threads", "2")
        assert plain.wait() == 0, (root / "plain.log").read_text()
        ray_args = ("--ray", "local", "--threads", "1", "--actors", "2")
        run = predict(model, root / "images", root / "ray", *ray_args)
        while len(list((root / "ray").glob("*.png"))) < args.kill_after and run.poll() is None:
            time.sleep(0.05)
        members = session_members(run.pid)
        for pid in members:
            os.kill(pid, signal.SIGKILL)
        run.wait()
        time.sleep(2)
        left = session_members(run.pid)
        on_disk = {p.name: p.stat().st_mtime_ns for p in (root / "ray").glob("*.png")}
        done = {n for n in on_disk if not n.endswith("_overlay.png")}
        resumed = predict(model, root / "images", root / "ray", *ray_args)
        assert resumed.wait() == 0, (root / "ray.log").read_text()
        lines = (root / "ray" / "manifest.jsonl").read_text().splitlines()
        records = [json.loads(line) for line in lines]
        status = {s: sum(r["status"] == s for r in records) for s in ("written", "skipped")}
        skipped = {Path(r["outputs"][0]).name for r in records if r["status"] == "skipped"}
        rewritten = [n for n, t in on_disk.items() if (root / "ray" / n).stat().st_mtime_ns != t]
        want, got = masks(root / "plain"), masks(root / "ray")
        same = sorted(want) == sorted(got) and all(np.array_equal(want[n], got[n]) for n in want)
        temporaries = [p.name for p in (root / "ray").glob(".*")]
    report = f"""# `atrous predict --ray`: killed midway, re-run, compared with `atrous predict`

{args.images} JPEGs (300x200 and 320x240), dm0.5 fast graph at 513 (random weights), local Ray
instance (2 CPUs, 2 actors x 1 thread). The first `--ray` run was killed with SIGKILL (driver,
raylet, GCS and actors: {len(members)} processes of its session) once {len(done)} masks were on
disk; {len(left)} of its processes were left afterwards. The same command was then run again.

| check | result |
|---|---|
| masks on disk after the kill | {len(done)} |
| re-run: skipped / written | {status["skipped"]} / {status["written"]} |
| skipped == the masks present after the kill | {skipped == done} |
| files rewritten by the re-run (mtime changed) | {len(rewritten)} |
| masks identical to plain `atrous predict` ({len(want)} files) | {same} |
| temporaries left in the output folder | {len(temporaries)} |

Command: `PYTHONPATH=src python benchmarks/ray_resume.py {" ".join(sys.argv[1:])}`
"""
    RESULT.write_text(report)
    print(report)


if __name__ == "__main__":
    main()
