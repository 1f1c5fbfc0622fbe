"""Benchmark records: the statistics of one measured configuration and the result of one call,
with their JSON, CSV and table forms (schema ``atrous.benchmark/1``)."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from atrous._atomic import atomic_write_text

__all__ = ["BenchRecord", "BenchResult", "SCHEMA"]

SCHEMA = "atrous.benchmark/1"


@dataclass
class BenchRecord:
    """Latency statistics of one (target, size, threads, mode) configuration, in milliseconds."""

    label: str
    engine: str
    size: int | None
    threads: int
    mode: str
    runs: int
    precision: str
    median_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    min_ms: float
    throughput_ips: float
    gmacs: float | None = None
    gflops: float | None = None
    file_mb: float | None = None
    stages_ms: dict[str, float] = field(default_factory=dict)
    input_size: list[int] | None = None  # the network input measured, [height, width]
    path: str = ""  # the Segmenter's path_used: fast-int8, fast-fp32, or the engine's name


@dataclass
class BenchResult:
    """All records of one benchmark call, with the machine, settings and the call order."""

    records: list[BenchRecord]
    runs: int
    warmup: int
    order: list[str]
    peak_rss_mb: float
    machine: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary (schema ``atrous.benchmark/1``)."""
        return {
            "schema": SCHEMA,
            "machine": self.machine,
            "runs": self.runs,
            "warmup": self.warmup,
            "peak_rss_mb": self.peak_rss_mb,
            "order": self.order,
            "records": [asdict(r) for r in self.records],
        }

    def to_json(self, path: str | Path | None = None) -> str:
        """Serialise to JSON; also write it (atomically) when ``path`` is given."""
        text = json.dumps(self.to_dict(), indent=2)
        if path is not None:
            atomic_write_text(path, text + "\n")
        return text

    def to_csv(self, path: str | Path | None = None) -> str:
        """One row per record (stages flattened as ``stage_<name>_ms``)."""
        stage_names = sorted({k for r in self.records for k in r.stages_ms})
        columns = [k for k in asdict(self.records[0]) if k != "stages_ms"] if self.records else []
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(columns + [f"stage_{s}" for s in stage_names])
        for r in self.records:
            row = asdict(r)
            writer.writerow([row[c] for c in columns] + [r.stages_ms.get(s) for s in stage_names])
        if path is not None:
            atomic_write_text(path, buf.getvalue())
        return buf.getvalue()

    def find(self, label: str, mode: str = "end_to_end", size=None, threads=None) -> BenchRecord:
        """The record for ``label`` and ``mode`` (and size/threads when several were measured)."""
        for r in self.records:
            same = (r.label, r.mode) == (label, mode)
            if same and size in (None, r.size) and threads in (None, r.threads):
                return r
        raise KeyError(f"no record for {label} {mode} size={size} threads={threads}")

    def table_rows(self) -> tuple[list[str], list[list[Any]]]:
        """Columns and rows for a printed table."""
        cols = ["model", "ran on", "precision", "size", "threads", "mode", "median ms", "p90 ms"]
        cols += ["p99 ms", "img/s", "GMACs", "GFLOP/s", "file MB"]
        rows = [
            [r.label, r.engine, r.precision, r.size or "card", r.threads, r.mode, r.median_ms]
            + [r.p90_ms]
            + [r.p99_ms]
            + [r.throughput_ips, r.gmacs or "-", r.gflops or "-", r.file_mb or "-"]
            for r in self.records
        ]
        return cols, rows
