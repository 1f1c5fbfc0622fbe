"""Long verbs report each step; in a pipe as plain '[hh:mm:ss] step...' lines on stderr."""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

from atrous.cli import app
from atrous.cli._output import Output

STEP = r"\[\d\d:\d\d:\d\d\] {}\.\.\."


def test_progress_lines_when_not_a_terminal(capsys):
    out = Output()
    with out.working("first step") as progress:
        progress("second step")
    err = capsys.readouterr().err
    assert re.search(STEP.format("first step"), err) and re.search(STEP.format("second step"), err)


def test_zoo_reports_each_model_it_builds():
    result = CliRunner().invoke(app, ["zoo", "deeplabv3_mnv2_dm05_os16"])
    assert result.exit_code == 0, result.output
    assert re.search(STEP.format(r"measuring deeplabv3_mnv2_dm05_os16 \(1/1\)"), result.output)


@pytest.mark.usefixtures("private_engine_cache")
def test_export_reports_writing_and_checking(small_checkpoint, tmp_path):
    args = ["export", str(small_checkpoint), "-o", str(tmp_path / "s.onnx"), "--threads", "1"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    for step in ("exporting onnx \\(fp32\\)", "writing the onnx file", "checking parity"):
        assert re.search(STEP.format(step + ".*?"), result.output), step
