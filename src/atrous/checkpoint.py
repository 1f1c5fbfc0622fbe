"""Checkpoints: a state_dict plus its model card, written atomically, loaded with nothing re-stated.

A checkpoint is a ``torch.save`` dict with keys ``state_dict``, ``card`` (JSON) and optionally
``train_state`` (optimizer, scheduler, RNG, epoch) for resuming. Plain state_dicts load too when a
zoo name is given.

Checkpoints are untrusted input (``inspect`` exists for files downloaded from elsewhere), so they
are read with ``torch.load(weights_only=True)``: only tensors, containers and plain values are
rebuilt, and a pickle that names any other callable is refused before anything runs. The one
extra allowed is NumPy's array reconstruction (old training states held NumPy's RNG as an array).
"""

from __future__ import annotations

import argparse
import pickle
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

try:  # NumPy 2 renamed numpy.core to numpy._core
    from numpy._core.multiarray import _reconstruct
except ImportError:  # pragma: no cover - NumPy 1.x
    from numpy.core.multiarray import _reconstruct  # type: ignore[no-redef]

from atrous._atomic import atomic_path
from atrous.card import ModelCard, card_from_json
from atrous.errors import ModelError
from atrous.models.deeplab import DeepLab
from atrous.models.foreign import describe_layout, from_foreign, unwrap_state_dict
from atrous.models.zoo import default_card

__all__ = [
    "save_checkpoint",
    "read_checkpoint",
    "load_checkpoint",
    "load_state_dict_checked",
    "plain_state_dict",
]

FORMAT = "atrous-checkpoint-v1"

# The only callables allowed beyond torch's own weights-only list: NumPy array reconstruction
# (training states written before RNG states were stored as tensors) and argparse.Namespace
# (torchvision's reference scripts store their arguments beside the weights); neither runs code
# beyond building an array or setting attributes.
_ALLOWED_GLOBALS: list[Any] = [
    argparse.Namespace,
    _reconstruct,
    np.ndarray,
    np.dtype,
    type(np.dtype(np.uint32)),
]


def save_checkpoint(
    path: str | Path, model: nn.Module, card: ModelCard, train_state: dict[str, Any] | None = None
) -> Path:
    """Write model weights, card and optional training state to ``path`` atomically."""
    payload: dict[str, Any] = {
        "format": FORMAT,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "card": card.to_json(),
    }
    if train_state is not None:
        payload["train_state"] = train_state
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return Path(path)


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint file's raw dict; ModelError naming the file if it is not one."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: file not found")
    try:
        with torch.serialization.safe_globals(_ALLOWED_GLOBALS):
            data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "Unsupported global" not in str(exc) and "GLOBAL" not in str(exc):
            raise ModelError(f"{path}: not a readable checkpoint ({_first_line(exc)})") from None
        raise ModelError(
            f"{path}: refused, the file asks to run code when loaded ({_unsafe_global(exc)}); "
            "atrous loads only tensors and plain values from checkpoints"
        ) from None
    except Exception as exc:  # noqa: BLE001 - nothing runs under weights_only: any error is a bad file
        raise ModelError(f"{path}: not a readable checkpoint ({_first_line(exc)})") from None
    if not isinstance(data, dict):
        raise ModelError(f"{path}: not a checkpoint (holds a {type(data).__name__})")
    return data


def _first_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__


def _unsafe_global(exc: BaseException) -> str:
    """The callable a refused pickle named, from torch's weights-only message."""
    match = re.search(r"(?:GLOBAL|global) ([\w.]+)", str(exc))
    return f"needs {match.group(1)}" if match else "not weights only"


def load_state_dict_checked(
    model: nn.Module, state_dict: dict[str, torch.Tensor], source: str
) -> None:
    """Load ``state_dict`` strictly; one ModelError listing missing, unexpected, mis-shaped keys."""
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    misshaped = [
        f"{k} {tuple(state_dict[k].shape)} vs {tuple(own[k].shape)}"
        for k in own
        if k in state_dict
        and hasattr(state_dict[k], "shape")
        and state_dict[k].shape != own[k].shape
    ]
    if missing or unexpected or misshaped:
        parts = []
        for label, keys in (
            ("missing", missing),
            ("unexpected", unexpected),
            ("mis-shaped", misshaped),
        ):
            if keys:
                shown = ", ".join(keys[:4]) + (f" (+{len(keys) - 4} more)" if len(keys) > 4 else "")
                parts.append(f"{len(keys)} {label}: {shown}")
        raise ModelError(f"{source}: weights do not fit the model; " + "; ".join(parts))
    model.load_state_dict(state_dict)


def plain_state_dict(
    data: dict[str, Any], source: str, zoo_name: str | None = None, **overrides: object
) -> tuple[dict[str, torch.Tensor], ModelCard | None]:
    """The atrous state_dict and card of a checkpoint without an atrous card: a foreign layout
    (torchvision, smp) is recognised and renamed (its card from the zoo), wrappers and
    prefixes removed.

    ``zoo_name`` gives the card otherwise; without one the card is None for an atrous-layout
    state_dict, and a file of no known layout is a ModelError describing what it holds.
    """
    state_dict = unwrap_state_dict(data)
    foreign = from_foreign(state_dict, source)
    if foreign is not None:
        state_dict, card = foreign
        return state_dict, default_card(zoo_name, **overrides) if zoo_name else card
    if "classifier.weight" not in state_dict:
        raise ModelError(f"{source}: not a known checkpoint layout ({describe_layout(data)})")
    if not all(isinstance(v, torch.Tensor) for v in state_dict.values()):
        raise ModelError(f"{source}: not a state_dict (values are not all tensors)")
    return state_dict, default_card(zoo_name, **overrides) if zoo_name else None


def load_checkpoint(
    path: str | Path, zoo_name: str | None = None, **overrides: object
) -> tuple[DeepLab, ModelCard]:
    """Rebuild the model stored in ``path`` and return it (eval mode) with its card.

    A plain state_dict (no card) needs ``zoo_name``; ``overrides`` (e.g. num_classes) adjust
    that zoo configuration.
    """
    data = read_checkpoint(path)
    if "card" in data and "state_dict" in data:
        card = card_from_json(data["card"], str(path))
        state_dict = data["state_dict"]
    else:
        state_dict, card = plain_state_dict(data, str(path), zoo_name, **overrides)
    if card is None:
        raise ModelError(f"{path}: plain state_dict without a model card; pass a zoo name")
    if card.model is None:
        raise ModelError(f"{path}: the model card has no architecture config")
    model = DeepLab(card.model)
    load_state_dict_checked(model, state_dict, str(path))
    return model.eval(), card
