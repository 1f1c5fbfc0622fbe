"""OpenMP's wait policy, chosen from how busy the machine is when atrous is imported.

libgomp's idle threads spin for a while before sleeping. On a quiet machine that is fastest (a
passive wait made the eager dm0.5 network 2.8x slower at 2 threads here); when other processes
already hold the cores, the spinning threads take turns with the working one and every
per-operator barrier waits for a scheduler tick (2 s instead of 23 ms, same network, beside six
busy processes). The policy is read once, when torch loads libgomp, so it is decided at import:
passive when the 1-minute load average already fills the cores this process may use.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import threading
from collections.abc import Callable
from typing import Any

__all__ = [
    "choose_wait_policy",
    "cores_oversubscribed",
    "other_cpus",
    "run_on",
    "set_wait_policy",
]


def choose_wait_policy(load: float, cores: int) -> str | None:
    """'PASSIVE' when ``load`` (runnable processes) fills ``cores``, else None (libgomp's
    default: spin briefly, then sleep)."""
    return "PASSIVE" if load >= cores - 0.5 else None


def set_wait_policy() -> str | None:
    """Set ``OMP_WAIT_POLICY`` for this process unless the user set it; returns what was set."""
    if "OMP_WAIT_POLICY" in os.environ:
        return None
    machine = _load_and_cores()
    if machine is None:
        return None
    policy = choose_wait_policy(*machine)
    if policy is not None:
        os.environ["OMP_WAIT_POLICY"] = policy
    return policy


def cores_oversubscribed(factor: float = 2.0) -> bool:
    """True when the 1-minute load average exceeds ``factor`` runnable processes per core this
    process may use: work handed to another thread then waits for a time slice (False where
    the load is unknown)."""
    machine = _load_and_cores()
    return machine is not None and machine[0] > factor * machine[1]


def _load_and_cores() -> tuple[float, int] | None:
    """The 1-minute load average and the cores this process may use; None where unknown (not
    Linux, no load average)."""
    try:
        return os.getloadavg()[0], len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None


@functools.cache
def _sched_getcpu() -> Callable[[], int] | None:
    """libc's sched_getcpu (glibc and musl on Linux); None where there is none."""
    try:
        function = ctypes.CDLL(None, use_errno=True).sched_getcpu
    except (AttributeError, OSError):
        return None
    function.restype = ctypes.c_int
    function.argtypes = []
    return function


def other_cpus() -> frozenset[int] | None:
    """The CPUs the calling thread may run on besides the one it runs on now; None where the
    system cannot say or there is no other."""
    getcpu = _sched_getcpu()
    if getcpu is None or not hasattr(os, "sched_getaffinity"):
        return None
    cpu = getcpu()
    others = frozenset(os.sched_getaffinity(0)) - {cpu}
    return others if cpu >= 0 and others else None


_confined = threading.local()  # the CPU set this helper thread was last confined to


def run_on(cpus: frozenset[int] | None, work: Callable[..., Any], *args: Any) -> Any:
    """``work(*args)`` in the calling helper thread, confined to ``cpus`` first (None: where it
    is). For work handed over by a thread that keeps working itself (:func:`other_cpus` there):
    a woken helper was put on the waker's own CPU in ~30% of processes, and Linux kept that
    placement, so both halves of a 2-thread label step ran on one core (dm0.5 at 513, 2 cores:
    0.96 instead of 0.64 ms)."""
    if cpus is not None and cpus != getattr(_confined, "cpus", None):
        with contextlib.suppress(OSError):  # a sandbox that refuses: it runs where it is
            os.sched_setaffinity(0, cpus)
        _confined.cpus = cpus
    return work(*args)
