"""A runtime that crashes while timing becomes one line, not a dead atrous."""

from __future__ import annotations

import os
import signal

from atrous.bench.compare import ComparisonRow
from atrous.bench.isolate import run_isolated
from atrous.cli._common import print_comparison
from atrous.cli._output import Output


def _segfault() -> float:
    os.kill(os.getpid(), signal.SIGSEGV)
    return 1.0


def _fails() -> float:
    raise RuntimeError("no such device\nsecond line")


def test_a_native_crash_in_the_child_is_one_line():
    value, why = run_isolated(_segfault)
    assert value is None and why == "the runtime crashed (signal SIGSEGV); not measured"


def test_errors_and_values_come_back():
    assert run_isolated(divmod, 7, 2) == ((3, 1), None)
    assert run_isolated(_fails) == (None, "RuntimeError: no such device")


def test_the_table_says_why_latency_is_missing(capsys):
    row = ComparisonRow("int8", 1.0, 0.1, 0.5, None, "the runtime crashed (signal SIGSEGV)")
    print_comparison(Output(), [row])
    text = capsys.readouterr()
    assert "int8: latency: the runtime crashed (signal SIGSEGV)" in text.out + text.err
