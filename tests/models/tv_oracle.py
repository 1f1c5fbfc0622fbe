"""torchvision 0.28 as a test oracle: imported from ``.venv/oracles`` (``make setup`` installs it
there with ``--no-deps``), its two fake-kernel registrations skipped.

The package index's torchvision is a CUDA build whose ``import`` fails beside the CPU torch
("operator torchvision::nms does not exist"); its segmentation models are pure Python and import
once ``torch.library.register_fake`` is a no-op during the import. Tests needing it skip with
the reason when that stops working.
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

ORACLE_DIR = Path(sys.prefix) / "oracles"


def _noop_register_fake(*args, **kwargs):
    """``torch.library.register_fake`` stand-in: decorator or direct form, registers nothing."""
    if args and callable(args[-1]) and not isinstance(args[0], str):
        return args[-1]
    return lambda fn: fn


def import_torchvision() -> ModuleType:
    """``torchvision.models.segmentation`` from the oracle folder; skip the test otherwise."""
    if not (ORACLE_DIR / "torchvision").is_dir():
        pytest.skip(f"torchvision oracle not installed in {ORACLE_DIR} (run make setup)")
    if str(ORACLE_DIR) not in sys.path:
        sys.path.append(str(ORACLE_DIR))
    real = torch.library.register_fake
    torch.library.register_fake = _noop_register_fake
    try:
        from torchvision.models import segmentation
    except Exception as exc:  # noqa: BLE001 - any failure means no oracle, not a test failure
        pytest.skip(f"torchvision oracle does not import here: {str(exc).splitlines()[0]}")
    finally:
        torch.library.register_fake = real
    return segmentation
