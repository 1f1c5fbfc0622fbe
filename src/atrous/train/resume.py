"""Training state in checkpoints, and ``--resume``: restore it, then decide how far to train.

A resume with the same config continues the checkpoint's schedule exactly. A new
``train.epochs``, or a run whose plan a time budget ended early, re-plans the poly LR to the new
horizon (the LR the schedule of that horizon has at the current iteration), and says so.

Checkpoints hold CPU tensors only (they load on any machine); a resume moves the optimizer state
to the device the run trains on.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from atrous.checkpoint import read_checkpoint
from atrous.errors import ConfigError, ModelError
from atrous.train.device import move_optimizer_state
from atrous.train.run import Run

__all__ = ["train_state", "restore", "plan_resume", "to_cpu"]


def to_cpu(value: Any) -> Any:
    """``value`` with every tensor in it (nested dicts, lists, tuples) copied to the CPU."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, dict):
        return {k: to_cpu(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(to_cpu(v) for v in value)
    return value


def _rng_state() -> dict[str, Any]:
    """RNG states as tensors and plain values, so checkpoints load with ``weights_only=True``."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "numpy": (name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached),
        "python": random.getstate(),
    }


def _set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`_rng_state` captured (older NumPy-array states read too)."""
    torch.set_rng_state(state["torch"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    keys = keys.numpy() if isinstance(keys, torch.Tensor) else np.asarray(keys)
    np.random.set_state((name, keys.astype(np.uint32), pos, has_gauss, cached))
    random.setstate(state["python"])


def train_state(run: Run, epoch: int) -> dict[str, Any]:
    """What a checkpoint needs to continue ``run`` after ``epoch`` epochs, exactly (CPU
    tensors, wherever the run trains)."""
    return {
        "epoch": epoch,
        "optimizer": to_cpu(run.optimizer.state_dict()),
        "scaler": run.scaler.state_dict(),  # empty unless train.amp=fp16
        "scheduler": run.scheduler.state_dict(),
        "rng": _rng_state(),
        "best_miou": run.best_miou,
        "best_epoch": run.best_epoch,
        "history": run.history,
        "config": run.config.model_dump(mode="json"),
    }


def restore(run: Run, path: Path) -> int | None:
    """Load model, optimizer, scheduler, RNG, history and epoch from ``path`` into ``run``;
    returns the ``train.epochs`` the checkpoint was trained towards (None if not recorded)."""
    data = read_checkpoint(path)
    state = data.get("train_state")
    if state is None:
        raise ModelError(f"{path}: no training state to resume from")
    run.model.load_state_dict(data["state_dict"])
    run.optimizer.load_state_dict(state["optimizer"])
    move_optimizer_state(run.optimizer)
    if state.get("scaler") and run.scaler.is_enabled():
        run.scaler.load_state_dict(state["scaler"])
    run.scheduler.load_state_dict(state["scheduler"])
    _set_rng_state(state["rng"])
    run.start_epoch = int(state["epoch"])
    run.best_miou = float(state["best_miou"])
    run.best_epoch = int(state["best_epoch"])
    run.history = list(state["history"])
    saved = (state.get("config") or {}).get("train", {}).get("epochs")
    return None if saved is None else int(saved)


def plan_resume(run: Run, path: Path, saved_epochs: int | None) -> tuple[bool, str]:
    """After :func:`restore`: whether there is training left, and the line saying what happens.

    Same ``train.epochs``, plan not finished: the checkpoint's schedule continues as it was.
    Same epochs, plan finished early (a time budget ended it): train on to ``train.epochs``.
    Other epochs: train to the new count. Both re-plan the poly LR horizon. Fewer epochs than
    already run is refused (ConfigError).
    """
    epochs, done = run.config.train.epochs, run.start_epoch
    planned = run.planned_epochs()
    where = f"resuming {path} at epoch {done + 1}/{epochs}"
    if saved_epochs is not None and saved_epochs != epochs:
        if epochs <= done:
            raise ConfigError(
                f"{path}: train.epochs={epochs} but {done} epochs have already run; "
                f"--resume needs train.epochs above {done}"
            )
        reason = f"train.epochs {saved_epochs} -> {epochs}"
    elif done < planned:
        return True, f"resuming {path} at epoch {done + 1}/{planned}"
    elif done >= epochs:
        return False, f"{path} has run all {epochs} planned epochs: nothing left to train"
    else:
        reason = f"its plan ended at epoch {done} (time budget); training on to {epochs}"
    run.scheduler.set_total_iters(epochs * run.iters_per_epoch)
    lr = run.optimizer.param_groups[0]["lr"]
    return True, f"{where}: {reason}, LR schedule re-planned to match (lr now {lr:.2e})"
