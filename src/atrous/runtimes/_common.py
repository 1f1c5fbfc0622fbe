"""Small pieces every exported-model engine shares: the card's metadata key, input casting,
one-line load errors, the count of repeated input shapes."""

from __future__ import annotations

import numpy as np

__all__ = ["CARD_KEY", "RepeatedShapes", "cast_input", "error_line"]

CARD_KEY = "atrous.card"


def cast_input(batch: np.ndarray, dtype: type | np.dtype) -> np.ndarray:
    """Cast a float batch to an integer input dtype by rounding and clipping, else to ``dtype``."""
    if np.issubdtype(dtype, np.integer) and not np.issubdtype(batch.dtype, np.integer):
        info = np.iinfo(dtype)
        return np.clip(np.rint(batch), info.min, info.max).astype(dtype)
    return batch.astype(dtype, copy=False)


def error_line(exc: BaseException) -> str:
    """The first line of a runtime's (often multi-line) error message."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class RepeatedShapes:
    """Counts the input shapes an engine sees, to specialise it for the sizes that repeat
    (a shape seen once may be a one-off; many different sizes keep the count bounded)."""

    def __init__(self, limit: int = 64) -> None:
        self.limit = limit
        self._seen: dict[tuple[int, ...], int] = {}

    def repeated(self, shape: tuple[int, ...]) -> bool:
        """Count ``shape``; True from its second sight on."""
        if len(self._seen) > self.limit:
            self._seen.clear()
        self._seen[shape] = self._seen.get(shape, 0) + 1
        return self._seen[shape] >= 2
