"""Scratch folders are made by atrous._atomic.scratch_directory, so those a SIGKILL left behind
are removed by the next run."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import torch

from atrous.export.openvino import export_openvino

SRC = Path(__file__).parents[1] / "src" / "atrous"


def test_no_scratch_folder_is_made_around_scratch_directory():
    users = [
        p.relative_to(SRC).as_posix()
        for p in SRC.rglob("*.py")
        if re.search(r"TemporaryDirectory\(|mkdtemp\(", p.read_text()) and p.name != "_atomic.py"
    ]
    # staging beside a target (exports, videos) goes through atrous._atomic.staged_path too
    assert users == []


def test_an_export_removes_scratch_folders_of_killed_runs(tiny_checkpoint, tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    stale = [tmp_path / "tmp" / f"atrous-{kind}-pid999999999-x1" for kind in ("quant", "ptq")]
    for folder in stale:
        folder.mkdir()
        (folder / "model.onnx").write_bytes(b"partial")
    _, model, card = tiny_checkpoint
    torch.manual_seed(0)
    export_openvino(model, card, tmp_path / "out" / "m.xml", sample_size=(65, 65))
    assert not any(folder.exists() for folder in stale)
    assert list((tmp_path / "tmp").iterdir()) == []
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["m.bin", "m.xml"]
