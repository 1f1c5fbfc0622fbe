"""Exports made on demand (``Segmenter.from_file("best.pt", engine="onnxruntime")``), cached
under ``$ATROUS_CACHE/export`` (default ``~/.cache/atrous/export``) and keyed by the source's
content, so a checkpoint is exported once per format and re-exported when it changes."""

from __future__ import annotations

import hashlib
from pathlib import Path

from atrous.export.pipeline import ENGINE_OF_FORMAT, FORMATS, export_model
from atrous.runtimes.auto import cache_dir as atrous_cache_dir

__all__ = ["EXPORT_CACHE_VERSION", "cached_export", "format_of_engine"]

EXPORT_CACHE_VERSION = 1  # bump when export_model changes what a cached file computes


def format_of_engine(engine: str) -> str | None:
    """The export format an engine runs ('onnxruntime' -> 'onnx'); None for torch and auto."""
    return next((f for f, e in ENGINE_OF_FORMAT.items() if e == engine), None)


def _source_key(source: str | Path, format: str) -> str:
    """SHA-256 of the checkpoint's bytes (a zoo name: the name), the format and the version."""
    digest = hashlib.sha256(f"export-v{EXPORT_CACHE_VERSION}-{format}".encode())
    path = Path(str(source))
    if path.is_file():
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    else:
        digest.update(f"zoo:{source}".encode())
    return digest.hexdigest()[:16]


def cached_export(
    source: str | Path, format: str, cache_dir: str | Path | None = None, threads: int | None = None
) -> Path:
    """The ``format`` export of a checkpoint or zoo name in the cache, exported (and checked
    for parity) on the first call; logits out, so probabilities, flip and refine work."""
    cache = Path(cache_dir) if cache_dir else atrous_cache_dir() / "export"
    path = cache / f"{Path(str(source)).stem}-{_source_key(source, format)}{FORMATS[format]}"
    if not path.exists():
        export_model(source, format, path, with_argmax=False, threads=threads)
    return path
