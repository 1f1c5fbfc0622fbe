"""torchvision 0.28 and segmentation_models_pytorch 0.6 as test oracles: imported from
``.venv/oracles`` (``make setup`` installs them there with ``--no-deps``, smp with timm and
huggingface_hub), torchvision's two fake-kernel registrations skipped.

The package index's torchvision is a CUDA build whose ``import`` fails beside the CPU torch
("operator torchvision::nms does not exist"); its segmentation models are pure Python and import
once ``torch.library.register_fake`` is a no-op during the import. Tests needing it skip with
the reason when that stops working.
"""

from __future__ import annotations

import importlib
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


def _import_oracle(package: str, module: str) -> ModuleType:
    """``module`` of ``package`` from the oracle folder (torchvision's fake kernels skipped
    while importing: timm and smp import torchvision); skip the test otherwise."""
    if not (ORACLE_DIR / package).is_dir():
        pytest.skip(f"{package} oracle not installed in {ORACLE_DIR} (run make setup)")
    if str(ORACLE_DIR) not in sys.path:
        sys.path.append(str(ORACLE_DIR))
    real = torch.library.register_fake
    torch.library.register_fake = _noop_register_fake
    try:
        return importlib.import_module(module)
    except Exception as exc:  # noqa: BLE001 - any failure means no oracle, not a test failure
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        pytest.skip(f"{package} oracle does not import here: {first}")
    finally:
        torch.library.register_fake = real


def import_torchvision() -> ModuleType:
    """``torchvision.models.segmentation`` from the oracle folder; skip the test otherwise."""
    return _import_oracle("torchvision", "torchvision.models.segmentation")


def import_smp() -> ModuleType:
    """``segmentation_models_pytorch`` from the oracle folder; skip the test otherwise."""
    return _import_oracle("segmentation_models_pytorch", "segmentation_models_pytorch")


def spread_weights(model: torch.nn.Module) -> None:
    """Fan-in convolutions and random BN statistics in place: an oracle model's outputs then
    vary over an image (at its initialisation they barely do), so parity is not trivial."""
    for m in model.modules():
        if isinstance(m, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
        elif isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.uniform_(0.5, 1.5)
