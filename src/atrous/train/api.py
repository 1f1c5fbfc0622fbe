"""``train``: an ExperimentConfig in, a trained run out (one process, torchrun, or local ranks)."""

from __future__ import annotations

import time
from pathlib import Path

import yaml
from rich.console import Console
from torch.nn.parallel import DistributedDataParallel

from atrous._atomic import atomic_write_text, remove_stale_temporaries
from atrous.checkpoint import load_checkpoint, read_checkpoint
from atrous.config import ExperimentConfig
from atrous.errors import ConfigError
from atrous.fastpath.deploy import fast_graph_paths
from atrous.train.deploy import deploy_fast_graph
from atrous.train.device import Placement, resolve_placement
from atrous.train.distributed import (
    DistInfo,
    barrier,
    init_distributed,
    launched,
    local_rank,
    shutdown_distributed,
    spawn_local,
)
from atrous.train.loop import EpochCallback, TrainResult, fit
from atrous.train.resume import plan_resume, restore
from atrous.train.run import build_run

__all__ = ["train"]


def train(
    config: ExperimentConfig,
    out_dir: str | Path | None = None,
    resume: bool = False,
    *,
    console: Console | None = None,
    progress: bool = True,
    on_epoch_end: EpochCallback | None = None,
) -> TrainResult:
    """Train the experiment ``config`` into ``out_dir`` (default: config.out_dir).

    With ``resume``, model, optimizer, scheduler, RNG state, history and epoch come from
    ``out_dir/last.pt`` and training continues the same schedule; a new ``train.epochs`` (or a
    run a time budget ended early) continues to the new horizon with the LR schedule re-planned.
    Under torchrun each rank calls this; rank 0 alone validates and writes. ``train.device``
    and ``train.amp`` say where and in which precision (each rank takes its LOCAL_RANK's GPU).
    """
    cfg = config.train
    placement = resolve_placement(cfg.device, cfg.amp, local_rank())  # refused before spawning
    if cfg.processes > 1 and not launched():
        return _train_spawned(config, Path(out_dir or config.out_dir), resume, progress)
    dist = init_distributed(placement.device)
    try:
        out = Path(out_dir or config.out_dir)
        return _train(config, out, resume, dist, placement, console, progress, on_epoch_end)
    finally:
        shutdown_distributed(dist)


def _spawned_worker(config: ExperimentConfig, out_dir: Path, resume: bool, progress: bool) -> None:
    train(config, out_dir, resume=resume, console=Console(), progress=progress)


def _train_spawned(
    config: ExperimentConfig, out_dir: Path, resume: bool, progress: bool
) -> TrainResult:
    """``train.processes`` > 1 without torchrun: start the ranks here (one thread each by
    default), wait, and rebuild the result from what rank 0 wrote."""
    start = time.perf_counter()
    spawn_local(_spawned_worker, config.train.processes, config, out_dir, resume, progress)
    last, best = out_dir / "last.pt", out_dir / "best.pt"
    interrupted = out_dir / "interrupted.pt"
    final = interrupted if interrupted.exists() and not last.exists() else last
    state = read_checkpoint(final).get("train_state") or {}
    model, _ = load_checkpoint(final)
    history = list(state.get("history", []))
    best_epoch = int(state.get("best_epoch", -1))
    best_row = next((h for h in history if h.get("epoch") == best_epoch), {})
    return TrainResult(
        out_dir=out_dir,
        best_checkpoint=best if best.exists() else None,
        last_checkpoint=last if last.exists() else None,
        best_miou=float(state.get("best_miou", -1.0)),
        best_epoch=best_epoch,
        epochs_run=int(state.get("epoch", 0)),
        history=history,
        interrupted=interrupted.exists(),
        seconds=time.perf_counter() - start,
        model=model,
        degenerate=bool(best_row.get("val_degenerate")),
        fast_graph=next((p for p in fast_graph_paths(best) if p.is_file()), None),
    )


def _train(
    config: ExperimentConfig,
    out: Path,
    resume: bool,
    dist: DistInfo,
    placement: Placement,
    console: Console | None,
    progress: bool,
    on_epoch_end: EpochCallback | None,
) -> TrainResult:
    """One rank's training: build the run, restore it if resuming, prepare the folder, fit."""
    last = out / "last.pt"
    if resume and not last.is_file():
        raise ConfigError(f"{last}: nothing to resume (no last.pt in the output folder)")
    say = console.print if (console is not None and dist.is_main) else (lambda *a, **k: None)
    run, report = build_run(config, out, dist, resume=resume, placement=placement)
    if report:
        say(report)
    if placement != Placement():
        say(f"training on {placement.describe()}")
    proceeds = True
    if resume:
        proceeds, message = plan_resume(run, last, restore(run, last))
        say(message)
    if dist.enabled:
        on_gpu = placement.device.type == "cuda"
        run.model = DistributedDataParallel(
            run.model, device_ids=[placement.device] if on_gpu else None
        )
    if dist.is_main:
        out.mkdir(parents=True, exist_ok=True)
        for stale in remove_stale_temporaries(out):
            say(f"removed {stale.name}, left half-written by a killed run")
        if proceeds:  # a finished run keeps the config it was trained with
            atomic_write_text(
                out / "config.yaml",
                yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False),
            )
    barrier(dist)
    result = fit(run, console=console, progress=progress, on_epoch_end=on_epoch_end)
    best = result.best_checkpoint
    if dist.is_main and not result.interrupted and best is not None and best.is_file():
        result.fast_graph = deploy_fast_graph(config, best, run.val_data, run.threads, say)
    return result
