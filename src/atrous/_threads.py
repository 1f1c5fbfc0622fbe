"""OpenMP's wait policy, chosen from how busy the machine is when atrous is imported.

libgomp's idle threads spin for a while before sleeping. On a quiet machine that is fastest (a
passive wait made the eager dm0.5 network 2.8x slower at 2 threads here); when other processes
already hold the cores, the spinning threads take turns with the working one and every
per-operator barrier waits for a scheduler tick (2 s instead of 23 ms, same network, beside six
busy processes). The policy is read once, when torch loads libgomp, so it is decided at import:
passive when the 1-minute load average already fills the cores this process may use.
"""

from __future__ import annotations

import os

__all__ = ["choose_wait_policy", "cores_oversubscribed", "set_wait_policy"]


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
