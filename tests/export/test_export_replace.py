"""A re-export replaces the old file only with a verified new one (Ctrl-C, parity failure)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from atrous.errors import ModelError
from atrous.export import export_model

pytestmark = pytest.mark.usefixtures("private_engine_cache")


def _staging(folder: Path, name: str) -> list[Path]:
    return [p for p in folder.iterdir() if p.name.startswith(f".{name}.")]


# the CLI in a child whose parity check stalls until interrupted: the signal lands while the
# new file is staged and unverified, however fast or loaded the machine
_STALLED_EXPORT = """
import signal, sys, time
from pathlib import Path
from atrous.export import pipeline
from atrous.cli._app import run

# as launched from a terminal: a child can inherit an ignored SIGINT (a pytest worker handed
# one down in CI), and Python then never raises KeyboardInterrupt
signal.signal(signal.SIGINT, signal.default_int_handler)

marker, ckpt, target = sys.argv[1:4]

def stalled(*args, **kwargs):
    Path(marker).touch()
    time.sleep(120)

pipeline.check_parity = stalled
sys.argv = ["atrous", "export", ckpt, "-o", target]
run()
"""


def test_sigint_during_a_re_export_keeps_the_old_file(tiny_checkpoint, tmp_path):
    ckpt = tiny_checkpoint[0]
    target = tmp_path / "m.onnx"
    export_model(ckpt, "onnx", target, check_sizes=[(65, 65)], threads=1)
    before = target.read_bytes()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2] / "src")}
    marker = tmp_path / "stalled"
    cmd = [sys.executable, "-c", _STALLED_EXPORT, str(marker), str(ckpt), str(target)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not marker.exists() and proc.poll() is None:
        assert time.monotonic() < deadline, "the export never reached its parity check"
        time.sleep(0.02)
    assert proc.poll() is None, proc.communicate()[1].decode()[-500:]
    assert _staging(tmp_path, "m.onnx"), "the new file is not staged during the check"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err.decode()[-500:]
    assert target.read_bytes() == before
    assert _staging(tmp_path, "m.onnx") == []


@pytest.mark.parametrize("fmt,name", [("onnx", "m.onnx"), ("openvino", "m.xml")])
def test_a_failed_parity_check_keeps_the_old_file(
    tiny_checkpoint, tmp_path, monkeypatch, fmt, name
):
    from atrous.export import pipeline

    ckpt = tiny_checkpoint[0]
    target = tmp_path / name
    export_model(ckpt, fmt, target, check_sizes=[(65, 65)], threads=1)
    files = sorted(tmp_path.iterdir())
    before = {p.name: p.read_bytes() for p in files}

    def broken(*args, **kwargs):
        raise ModelError("simulated parity failure")

    monkeypatch.setattr(pipeline, "check_parity", broken)
    with pytest.raises(ModelError, match="simulated"):
        export_model(ckpt, fmt, target, check_sizes=[(65, 65)], threads=1)
    assert {p.name: p.read_bytes() for p in sorted(tmp_path.iterdir())} == before


def test_a_verified_re_export_replaces_the_file(tiny_checkpoint, tmp_path):
    ckpt = tiny_checkpoint[0]
    target = tmp_path / "m.xml"
    target.write_text("old")
    target.with_suffix(".bin").write_bytes(b"old")
    export_model(ckpt, "openvino", target, check_sizes=[(65, 65)], threads=1)
    assert target.read_text() != "old" and target.with_suffix(".bin").read_bytes() != b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.bin", "m.xml", "tiny.pt"]
