"""OpenMP's wait policy: passive when the machine is already busy, libgomp's default otherwise,
a user's choice kept, decided before torch loads."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from atrous._threads import choose_wait_policy

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


def test_passive_only_when_the_load_already_fills_the_cores():
    assert choose_wait_policy(load=0.3, cores=2) is None  # quiet: spinning is fastest
    assert choose_wait_policy(load=1.2, cores=2) is None
    assert choose_wait_policy(load=1.6, cores=2) == "PASSIVE"  # a busy process per core
    assert choose_wait_policy(load=7.0, cores=2) == "PASSIVE"
    assert choose_wait_policy(load=3.0, cores=8) is None


def test_importing_atrous_decides_from_this_machines_load_before_torch_loads():
    code = (
        "import os; load = os.getloadavg()[0]; cores = len(os.sched_getaffinity(0)); "
        "import atrous, torch; from atrous._threads import choose_wait_policy; "
        "print(os.environ.get('OMP_WAIT_POLICY') == choose_wait_policy(load, cores) or "
        "abs(load - (cores - 0.5)) < 0.3)"  # the load may cross the line between the two reads
    )
    assert _policy_seen(code) == "True"


def test_a_policy_the_user_chose_is_kept():
    code = "import atrous, os; print(os.environ.get('OMP_WAIT_POLICY'))"
    assert _policy_seen(code, OMP_WAIT_POLICY="ACTIVE") == "ACTIVE"


def test_torch_imported_first_is_left_alone():
    """Too late to change libgomp then: atrous does not pretend it did."""
    code = "import torch, atrous, os; print(os.environ.get('OMP_WAIT_POLICY'))"
    assert _policy_seen(code) == "None"


def test_the_label_tail_runs_in_one_band_when_the_cores_are_oversubscribed(monkeypatch):
    import numpy as np

    import atrous.upsample as upsample
    from atrous._threads import cores_oversubscribed

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    monkeypatch.setattr(upsample, "other_cpus", lambda: None)  # the fake pool is this thread
    monkeypatch.setattr(os, "getloadavg", lambda: (3.9, 0.0, 0.0))
    assert not cores_oversubscribed()  # our own two threads and a neighbour: 2 bands pay
    monkeypatch.setattr(os, "getloadavg", lambda: (22.0, 0.0, 0.0))
    assert cores_oversubscribed()
    logits = np.random.default_rng(0).normal(size=(5, 40, 40)).astype(np.float32)
    submitted = []
    monkeypatch.setattr(upsample, "_pool", lambda n: submitted.append(n) or ThreadPoolFake())
    busy = upsample.sparse_upsample_argmax(logits, (160, 160), threads=2)
    assert submitted == []  # busy: both bands' rows in the calling thread
    monkeypatch.setattr(os, "getloadavg", lambda: (0.5, 0.0, 0.0))
    quiet = upsample.sparse_upsample_argmax(logits, (160, 160), threads=2)
    assert submitted == [1]  # quiet: the second band goes to the pool
    assert (busy == quiet).all()  # the same labels either way


class ThreadPoolFake:
    """Runs submitted work at once (a pool whose thread is always scheduled)."""

    def submit(self, fn, *args):
        from concurrent.futures import Future

        future: Future = Future()
        future.set_result(fn(*args))
        return future


def _in_a_new_thread(work):
    """work() run in a thread of its own (its CPU affinity is its own), and its result."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(work).result()


@pytest.mark.skipif(
    not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2,
    reason="needs two CPUs this process may run on",
)
def test_a_band_handed_to_a_helper_runs_off_the_handing_threads_cpu():
    from atrous._threads import other_cpus, run_on

    allowed = frozenset(os.sched_getaffinity(0))
    beside = other_cpus()
    assert beside is not None and len(beside) == len(allowed) - 1 and beside < allowed
    one = frozenset([min(allowed)])

    def confined_twice():
        first = run_on(one, os.sched_getaffinity, 0)
        return first, run_on(None, os.sched_getaffinity, 0)  # None: left where it is

    first, again = _in_a_new_thread(confined_twice)
    assert first == one and again == one
    assert os.sched_getaffinity(0) == allowed  # the handing thread itself is untouched
