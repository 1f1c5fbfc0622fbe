"""Small pieces every exported-model engine shares: input casting,
one-line load errors, runners specialised for the input shapes that repeat."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from atrous.errors import ModelError

__all__ = ["ShapeSpecializer", "cast_input", "error_line", "output_index"]


def cast_input(batch: np.ndarray, dtype: type | np.dtype) -> np.ndarray:
    """Cast a float batch to an integer input dtype by rounding and clipping, else to ``dtype``."""
    if np.issubdtype(dtype, np.integer) and not np.issubdtype(batch.dtype, np.integer):
        info = np.iinfo(dtype)
        return np.clip(np.rint(batch), info.min, info.max).astype(dtype)
    return batch.astype(dtype, copy=False)


def output_index(names: list[str], which: str | int | None, source: object) -> int:
    """The index of the output ``which`` names (a name, or an index counted from 0; None: the
    first), refused in one line that lists the outputs when there is no such output."""
    if which is None:
        return 0
    if isinstance(which, int) and not isinstance(which, bool) and 0 <= which < len(names):
        return which
    if isinstance(which, str) and which in names:
        return names.index(which)
    listed = ", ".join(f"{i}: {n}" for i, n in enumerate(names))
    raise ModelError(f"{source}: no output {which!r}; the model's outputs are {listed}")


def error_line(exc: BaseException) -> str:
    """The first line of a runtime's (often multi-line) error message."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class ShapeSpecializer:
    """Runners specialised for the input shapes an engine sees repeatedly: a shape seen for the
    second time gets one from ``build(shape)`` (a shape seen once may be a one-off), for up to
    ``slots`` shapes. ``build`` returns None for a shape it cannot specialise, which then stays
    on the general runner and is not tried again. The sight count is bounded: past ``memory``
    different shapes it starts over."""

    def __init__(self, slots: int, build: Callable[[tuple[int, ...]], Any], memory: int = 64):
        self.slots = slots
        self.build = build
        self.memory = memory
        self.fixed: dict[tuple[int, ...], Any] = {}  # input shape -> its specialised runner
        self._unfit: set[tuple[int, ...]] = set()
        self._seen: dict[tuple[int, ...], int] = {}

    def runner(self, shape: tuple[int, ...], general: Any) -> Any:
        """The runner for an input of ``shape``: its specialised one, else ``general``."""
        found = self.fixed.get(shape)
        if found is not None:
            return found
        if len(self.fixed) >= self.slots or shape in self._unfit:
            return general
        if len(self._seen) > self.memory:
            self._seen.clear()
        self._seen[shape] = self._seen.get(shape, 0) + 1
        if self._seen[shape] < 2:
            return general
        built = self.build(shape)
        if built is None:
            self._unfit.add(shape)
            return general
        self.fixed[shape] = built
        return built
