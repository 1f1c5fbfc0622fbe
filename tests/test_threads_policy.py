"""OpenMP threads wait passively under atrous (spinning threads starve a shared 2-core machine)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SRC = str(Path(__file__).parents[1] / "src")


def _policy_seen(code: str, **env: str) -> str:
    base = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    proc = subprocess.run(
        [sys.executable, "-c", code],
        env={**base, "PYTHONPATH": SRC, **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return proc.stdout.strip()


def test_importing_atrous_first_sets_the_passive_policy_before_torch_loads():
    code = "import atrous, os, torch; print(os.environ.get('OMP_WAIT_POLICY'))"
    assert _policy_seen(code) == "PASSIVE"


def test_the_cli_runs_with_the_passive_policy():
    code = "import atrous.cli, os; print(os.environ.get('OMP_WAIT_POLICY'))"
    assert _policy_seen(code) == "PASSIVE"


def test_a_policy_the_user_chose_is_kept():
    code = "import atrous, os; print(os.environ.get('OMP_WAIT_POLICY'))"
    assert _policy_seen(code, OMP_WAIT_POLICY="ACTIVE") == "ACTIVE"


def test_torch_imported_first_is_left_alone():
    """Too late to change libgomp then: atrous does not pretend it did."""
    code = "import torch, atrous, os; print(os.environ.get('OMP_WAIT_POLICY'))"
    assert _policy_seen(code) == "None"
