"""The shared output object and options: tables read in a pipe and at 80 columns, ``--json``
leaves only JSON on stdout, and every verb gives a shared option the same shape."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from rich.console import Console
from typer.testing import CliRunner

import atrous.cli._output as output_module
from atrous.cli import app
from atrous.cli._options import parse_size
from atrous.cli._output import Output, fold_name, format_cell

SRC = Path(__file__).parents[2] / "src"
BENCH_COLUMNS = ["model", "ran on", "precision", "size", "threads", "mode", "median ms"]
BENCH_COLUMNS += ["p90 ms", "p99 ms", "img/s", "GMACs", "GFLOP/s", "file MB"]


def _terminal(monkeypatch, width: int = 80) -> io.StringIO:
    """Make the shared stdout console an ``width``-column terminal writing into a buffer."""
    buffer = io.StringIO()
    fake = Console(file=buffer, force_terminal=True, width=width, color_system=None)
    monkeypatch.setattr(output_module, "console", fake)
    return buffer


def test_benchmark_through_a_pipe_prints_every_figure(tmp_path):
    """`atrous benchmark ... | cat` at COLUMNS=80: plain aligned rows, nothing cut to '…'."""
    record = tmp_path / "b.json"
    env = {**os.environ, "PYTHONPATH": str(SRC), "COLUMNS": "80"}
    env.pop("ATROUS_DEBUG", None)
    args = ["benchmark", "deeplabv3_mnv2_dm05_os16", "--sizes", "65", "--runs", "2"]
    args += ["--warmup", "0", "--threads", "1", "--json-out", str(record)]
    proc = subprocess.run(
        [sys.executable, "-m", "atrous", *args], capture_output=True, text=True, env=env,
        timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "…" not in proc.stdout and "\x1b[" not in proc.stdout
    lines = proc.stdout.strip().splitlines()
    assert lines[1].split() == " ".join(BENCH_COLUMNS).split()  # the header, on one line
    records = json.loads(record.read_text())["records"]
    rows = [line.split() for line in lines[3:]]
    assert len(rows) == len(records) == 2
    for row, rec in zip(rows, records, strict=True):
        assert row[0] == "deeplabv3_mnv2_dm05_os16:auto" and row[5] == rec["mode"]
        assert row[2] == rec["precision"] == "fp32"
        assert row[6] == format_cell(rec["median_ms"]) and row[10] == format_cell(rec["gmacs"])


def test_a_wide_table_in_an_80_column_terminal_keeps_every_figure(monkeypatch):
    """Too wide to wrap readably: one block per row, every column and value whole."""
    buffer = _terminal(monkeypatch)
    row = ["deeplabv3_mnv2_dm05_os16:auto", "onnxruntime", "fp32", 257, 2, "end_to_end", 12.34567]
    row += [13.5, 14.25, 81.0, 0.2295, 10.2, "-"]
    Output().table("benchmark", BENCH_COLUMNS, [row, row])
    text = buffer.getvalue()
    assert "…" not in text and max(len(line) for line in text.splitlines()) <= 80
    for column, value in zip(BENCH_COLUMNS, row, strict=True):
        assert f"{column}  {format_cell(value)}" in text


def test_a_table_that_can_wrap_folds_names_and_wraps_headers(monkeypatch):
    """Seven zoo-like columns fit 80 columns once long names fold at '_' and headers wrap."""
    buffer = _terminal(monkeypatch)
    columns = ["name", "input", "dataset", "params M", "GMACs", "published GMACs", "published mIoU"]
    rows = [
        ["deeplabv3plus_xception71_os16", "1025x2049", "cityscapes", 43.48, 513.0, "-", "-"],
        ["deeplabv3_mnv2_dm05_os16", "513x513", "voc", 0.697, 0.8675, 0.88, 70.19],
    ]
    Output().table("atrous model zoo", columns, rows)
    lines = buffer.getvalue().splitlines()
    assert "…" not in buffer.getvalue() and max(len(line) for line in lines) <= 80
    body = "\n".join(lines[4:])
    for row in rows:
        assert all(format_cell(v) in body for v in row[1:])
    folded = [line.split()[0] for line in lines[4:] if line.strip()]
    assert "".join(folded[:2]) == "deeplabv3plus_xception71_os16"


def test_fold_name_breaks_long_words_only():
    assert fold_name("deeplabv3plus_xception71_os16", 16) == "deeplabv3plus_\nxception71_os16"
    assert fold_name("short name", 16) == "short name"
    assert max(len(p) for p in fold_name("x" * 40, 16).split("\n")) == 16


def test_json_flag_prints_only_json_and_json_out_writes_the_same(tmp_path):
    out = tmp_path / "zoo.json"
    args = ["zoo", "deeplabv3_mnv2_dm05*", "--no-measure", "--json", "--json-out", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data[0]["name"] == "deeplabv3_mnv2_dm05_os16"
    assert json.loads(out.read_text()) == data
    # without --json the table is printed and the file still written
    table = CliRunner().invoke(app, ["zoo", "deeplabv3_mnv2_dm05*", "--no-measure", "--json-out",
                                     str(tmp_path / "z2.json")])  # fmt: skip
    assert "deeplabv3_mnv2_dm05_os16" in table.stdout and "published mIoU" in table.stdout
    assert json.loads((tmp_path / "z2.json").read_text()) == data


def _options() -> dict[str, dict]:
    """Verb name -> {option name -> click option} for every command of the app."""
    group = typer.main.get_command(app)
    commands = dict(group.commands)
    commands.update({f"data {k}": v for k, v in commands.pop("data").commands.items()})
    return {
        name: {o: p for p in cmd.params if p.param_type_name == "option" for o in p.opts}
        for name, cmd in commands.items()
    }


def test_shared_options_have_one_shape_on_every_verb():
    verbs = _options()
    json_verbs = [v for v, opts in verbs.items() if "--json" in opts]
    assert len(json_verbs) >= 11, json_verbs
    for verb, opts in verbs.items():
        assert "--print-json" not in opts, verb
        if "--json" in opts:
            assert opts["--json"].is_flag and "--json-out" in opts, verb
        if "--out" in opts:
            assert "-o" in opts["--out"].opts, verb
        if "--threads" in opts:
            assert opts["--threads"].default is None, verb
        if "--engine" in opts and verb != "quantize":  # quantize: the target runtime
            assert opts["--engine"].default == "auto", verb
    assert all("--json" in verbs[v] for v in ["benchmark", "profile", "optimize", "evaluate"])
    assert "--json-out" in verbs["evaluate"] and "--out" not in verbs["evaluate"]


@pytest.mark.parametrize("text", ["513", "513x513", "513X513"])
def test_one_size_parser(text):
    assert parse_size(text) == (513, 513)


@pytest.mark.parametrize(
    "args",
    [
        ["prune", "deeplabv3_mnv2_dm05_os16", "--size", "65x97"],
        ["quantize", "deeplabv3_mnv2_dm05_os16", "--calib", "synthetic", "--size", "65x97"],
        ["profile", "deeplabv3_mnv2_dm05_os16", "--size", "65x97"],
        ["benchmark", "deeplabv3_mnv2_dm05_os16", "--sizes", "65x97"],
        ["inspect", "deeplabv3_mnv2_dm05_os16", "--size", "0x5"],
    ],
)
def test_a_size_a_verb_cannot_take_is_one_line_before_work(args):
    from atrous.errors import ConfigError

    result = CliRunner().invoke(app, args)
    assert isinstance(result.exception, ConfigError), result.output
    assert "--size" in str(result.exception) and "\n" not in str(result.exception)
