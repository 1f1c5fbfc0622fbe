"""Small pieces every exported-model engine shares: the card's metadata key, input casting,
one-line load errors."""

from __future__ import annotations

import numpy as np

__all__ = ["CARD_KEY", "cast_input", "error_line"]

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
