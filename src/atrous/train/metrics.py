"""What a run records: metrics.csv, metrics.json (the whole history), TensorBoard, progress."""

from __future__ import annotations

import csv
import io
import json
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from atrous._atomic import atomic_write_text
from atrous.train.run import Run

__all__ = ["MetricsLog", "StepReporter", "progress_bar"]


class MetricsLog:
    """metrics.csv + metrics.json (whole history, rewritten atomically) and TensorBoard."""

    def __init__(self, out_dir: Path, tensorboard: bool) -> None:
        self.out_dir = out_dir
        self.writer = None
        if tensorboard:  # an optional extra, imported only when asked for
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(out_dir / "tensorboard"))

    def step(self, name: str, value: float, step: int) -> None:
        """One scalar at one global step (TensorBoard only)."""
        if self.writer is not None:
            self.writer.add_scalar(name, value, step)

    def epoch(self, history: list[dict[str, Any]]) -> None:
        """Record the newest row of ``history`` and rewrite the CSV/JSON files with all of it."""
        row = history[-1]
        for key, value in row.items():
            if key != "epoch" and isinstance(value, int | float):
                self.step(f"epoch/{key}", value, row["epoch"])
        keys = list(dict.fromkeys(k for h in history for k in h))
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=keys)
        writer.writeheader()
        writer.writerows(history)
        atomic_write_text(self.out_dir / "metrics.csv", text.getvalue())
        atomic_write_text(self.out_dir / "metrics.json", json.dumps(history, indent=2))
        if self.writer is not None:
            self.writer.flush()

    def close(self) -> None:
        """Flush and close TensorBoard."""
        if self.writer is not None:
            self.writer.close()


def progress_bar(console: Console | None, enabled: bool) -> Progress:
    """A per-epoch bar showing steps, loss, LR, images/s and time left."""
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.4f}  lr {task.fields[lr]:.2e}"),
        TextColumn("{task.fields[ips]:.1f} img/s"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    return Progress(*columns, console=console, disable=not enabled, transient=False)


class StepReporter:
    """``on_step`` of one epoch: advances its progress bar and logs loss and LR per step."""

    def __init__(self, run: Run, bar: Progress, task: TaskID, log: MetricsLog | None) -> None:
        self.run, self.bar, self.task, self.log = run, bar, task, log
        self.start, self.seen = time.perf_counter(), 0

    def __call__(self, loss: float, lr: float, n: int) -> None:
        self.seen += n * self.run.dist.world_size
        ips = self.seen / max(time.perf_counter() - self.start, 1e-9)
        self.bar.update(self.task, advance=1, loss=loss, lr=lr, ips=ips)
        if self.log is not None:
            step = self.run.scheduler.last_epoch  # optimizer steps so far, over all epochs
            self.log.step("train/loss", loss, step)
            self.log.step("train/lr", lr, step)
