"""Crash safety: ``atrous train`` killed with SIGKILL mid-epoch resumes with at most one epoch lost.

The killed run is the real CLI in a subprocess; after ``--resume`` its final weights must equal an
uninterrupted run with the same seed, bit for bit, and the output folder must hold only complete
files (every checkpoint loads, no temporaries left behind).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from atrous.checkpoint import read_checkpoint
from atrous.config import ExperimentConfig, parse_config
from atrous.train import train

EXPERIMENT = {
    "model": {"name": "deeplabv3_mnv2_dm05_os16", "input_size": 40},
    "data": {
        "kind": "synthetic",
        "image_size": 40,
        "crop_size": 40,
        "train_size": 48,
        "val_size": 4,
    },
    "train": {
        "epochs": 3,
        "batch_size": 4,
        "optimizer": "sgd",
        "lr": 0.02,
        "warmup_iters": 1,
        "threads": 1,  # one thread: far faster than two on a shared, loaded machine
        "tensorboard": False,
        "fast_graph": "none",
        "seed": 3,
    },
}


def _cli(*args) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")}
    return subprocess.Popen(
        [sys.executable, "-m", "atrous", *[str(a) for a in args]],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _epochs_done(out: Path) -> int:
    try:
        return len(json.loads((out / "metrics.json").read_text()))
    except (FileNotFoundError, json.JSONDecodeError):
        return 0


def _assert_only_complete_files(out: Path) -> None:
    for path in out.iterdir():
        assert not path.name.endswith(".tmp"), f"left behind: {path.name}"
        if path.suffix == ".pt":
            read_checkpoint(path)  # raises ModelError if partial
        if path.suffix == ".json":
            json.loads(path.read_text())


@pytest.mark.timeout(300)
def test_sigkill_mid_epoch_then_resume_matches_uninterrupted_run(tmp_path):
    config_path = tmp_path / "exp.yaml"
    config_path.write_text(yaml.safe_dump(EXPERIMENT))
    cut = tmp_path / "cut"

    proc = _cli("train", config_path, "--out", cut)
    deadline = time.monotonic() + 200
    while _epochs_done(cut) < 1:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "first epoch did not finish"
        time.sleep(0.05)
    time.sleep(0.3)  # inside epoch 2 (12 steps of 4 images)
    assert proc.poll() is None, "the run ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    killed_at = _epochs_done(cut)  # normally 1; 2 on a very fast machine
    assert 1 <= killed_at < 3
    # the epoch in progress is the only one lost
    assert read_checkpoint(cut / "last.pt")["train_state"]["epoch"] == killed_at
    # a temporary that a kill during a checkpoint write would leave: resume must clean it up
    (cut / ".last.pt.k1ll3d.atrous.tmp").write_bytes(b"partial")

    resumed = _cli("train", config_path, "--out", cut, "--resume")
    stdout, stderr = resumed.communicate(timeout=250)
    assert resumed.returncode == 0, stderr
    said = "".join(stdout.split())  # undo rich's line wrapping (it may split a long path)
    assert f"resuming{cut / 'last.pt'}atepoch{killed_at + 1}/3" in said
    assert "removed.last.pt.k1ll3d.atrous.tmp" in said
    _assert_only_complete_files(cut)

    config = parse_config(ExperimentConfig, EXPERIMENT)
    try:
        full = train(config, tmp_path / "full", progress=False)
    finally:
        torch.set_num_threads(2)  # train() set 1 for this process
    a = read_checkpoint(tmp_path / "full" / "last.pt")
    b = read_checkpoint(cut / "last.pt")
    assert a["train_state"]["epoch"] == b["train_state"]["epoch"] == 3
    for key, value in a["state_dict"].items():
        assert torch.equal(value, b["state_dict"][key]), key
    history = json.loads((cut / "metrics.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2, 3]
    assert [h["val_miou"] for h in history] == [h["val_miou"] for h in full.history]
