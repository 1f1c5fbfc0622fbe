"""Temporaries of killed writers are cleaned on the next write; live writers' are kept."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from atrous._atomic import atomic_write_text, remove_stale_temporaries, scratch_directory


def _dead_pid() -> int:
    """The pid of a process that has exited."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_next_write_removes_a_killed_writers_temporary_only(tmp_path):
    dead = tmp_path / f".model.onnx.pid{_dead_pid()}.x1y2.atrous.tmp"
    dead.write_bytes(b"")  # what SIGKILL mid-export left: 0 bytes, invalid
    live = tmp_path / f".other.onnx.pid{os.getpid()}.q9w8.atrous.tmp"
    live.write_bytes(b"in progress")
    legacy = tmp_path / ".last.pt.k1ll3d.atrous.tmp"  # no pid: written before pids were recorded
    legacy.write_bytes(b"partial")
    unrelated = tmp_path / ".hidden.tmp"
    unrelated.write_bytes(b"not ours")
    atomic_write_text(tmp_path / "report.txt", "ok")
    assert (tmp_path / "report.txt").read_text() == "ok"
    assert not dead.exists() and not legacy.exists()
    assert live.exists() and unrelated.exists()
    assert sorted(p.name for p in tmp_path.iterdir() if "atrous.tmp" in p.name) == [live.name]


def test_a_write_leaves_no_temporary_and_names_its_own_pid(tmp_path, monkeypatch):
    seen: list[str] = []
    real_replace = os.replace

    def spy(src, dst):
        seen.append(Path(src).name)
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    atomic_write_text(tmp_path / "a.json", "{}")
    assert seen and f".pid{os.getpid()}." in seen[0]
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]
    assert remove_stale_temporaries(tmp_path) == []


def test_scratch_directories_of_killed_processes_are_removed(tmp_path):
    dead = tmp_path / f"atrous-quant-pid{_dead_pid()}-abcd"
    dead.mkdir()
    (dead / "model.onnx").write_bytes(b"x")
    alive = tmp_path / f"atrous-ptq-pid{os.getpid()}-efgh"
    alive.mkdir()
    foreign = tmp_path / "other-pid1-x"
    foreign.mkdir()
    with scratch_directory("quant", dir=tmp_path) as tmp:
        assert Path(tmp).name.startswith(f"atrous-quant-pid{os.getpid()}-")
        assert not dead.exists() and alive.exists() and foreign.exists()
    assert not Path(tmp).exists()
