"""Batch segmentation on Ray: the same Segmenter over a Ray Data dataset of image paths.

One engine per actor (each with its own thread count), outputs named and written exactly as
``atrous predict`` writes a folder (:mod:`atrous.outputs`), each file atomically. An image whose
outputs are already present is skipped, so a re-run after a crash or a lost node resumes; the
manifest (``manifest.jsonl`` in the output folder) records each image's status. Ray is the
optional ``[ray]`` extra and is imported only when a run starts.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path, PurePath, PurePosixPath

import numpy as np

from atrous._atomic import atomic_write_text
from atrous.data.io import fast_decode_image, fast_read_image
from atrous.errors import AtrousError, InputError
from atrous.outputs import (
    IMAGE_SUFFIXES,
    expand_inputs,
    output_files,
    output_stems,
    outputs_present,
    write_prediction,
)
from atrous.segmenter import Segmenter

__all__ = ["BatchSummary", "list_images", "segment_dataset", "MANIFEST", "LOCAL_CPUS"]

MANIFEST = "manifest.jsonl"
LOCAL_CPUS = 2  # CPUs of the local Ray instance started when no address is given


@dataclass
class BatchSummary:
    """What a batch run did: counts per status, throughput, where the manifest is."""

    total: int
    written: int
    skipped: int
    failed: int
    seconds: float
    images_per_second: float  # images written per second of the run
    actors: int
    threads: int
    manifest: str

    def to_dict(self) -> dict:
        """A JSON-ready dictionary."""
        return asdict(self)


def _is_url(text: str) -> bool:
    """Whether an input names a remote or URI-addressed location (s3://, gs://, file://...)."""
    return "://" in text


def _filesystem(uri: str):
    """(pyarrow filesystem, path) for a URI: pyarrow's own (s3, gs, hdfs, file), else fsspec's."""
    import pyarrow.fs

    try:
        return pyarrow.fs.FileSystem.from_uri(uri)
    except (pyarrow.ArrowInvalid, ValueError):
        import fsspec  # http(s) and the rest of fsspec's protocols

        fs, path = fsspec.core.url_to_fs(uri)
        return pyarrow.fs.PyFileSystem(pyarrow.fs.FSSpecHandler(fs)), path


def _list_uri(uri: str) -> list[str]:
    """The image files a URI names: itself, or the images directly inside it, sorted."""
    import pyarrow.fs

    fs, path = _filesystem(uri)
    info = fs.get_file_info(path)
    if info.type == pyarrow.fs.FileType.NotFound:
        raise InputError(f"{uri}: not found")
    if info.type == pyarrow.fs.FileType.File:
        return [uri]
    base = uri.rstrip("/")
    names = sorted(
        entry.base_name
        for entry in fs.get_file_info(pyarrow.fs.FileSelector(path))
        if entry.type == pyarrow.fs.FileType.File
        and PurePosixPath(entry.base_name).suffix.lower() in IMAGE_SUFFIXES
    )
    return [f"{base}/{name}" for name in names]


def list_images(inputs: str | list[str]) -> list[tuple[str, str]]:
    """(input, output stem) for every image: local files, folders and globs as ``atrous predict``
    expands and names them, then URIs (a folder or a file) listed through pyarrow/fsspec."""
    items = [inputs] if isinstance(inputs, str) else list(inputs)
    local = [item for item in items if not _is_url(item)]
    sources: list[str] = []
    paths: list[PurePath] = []
    for path in expand_inputs(local) if local else []:
        sources.append(str(path.absolute()))  # actors may run in another working folder
        paths.append(path)
    for uri in (uri for item in items if _is_url(item) for uri in _list_uri(item)):
        sources.append(uri)
        paths.append(PurePosixPath(uri.split("://", 1)[1]))
    if not sources:
        raise InputError(f"no images found in {', '.join(items)}")
    return list(zip(sources, output_stems(paths), strict=True))


def _read(source: str) -> np.ndarray:
    """RGB pixels of a local image or one behind a URI."""
    if not _is_url(source):
        return fast_read_image(source)
    fs, path = _filesystem(source)
    with fs.open_input_file(path) as stream:
        return fast_decode_image(stream.readall(), source)


class _SegmentActor:
    """A Ray Data actor: one Segmenter (loaded once) segments and writes a batch of images."""

    def __init__(self, model, engine, threads, out, overlay, alpha):
        self.segmenter = Segmenter.from_file(model, engine=engine, threads=threads)
        self.out, self.overlay, self.alpha = Path(out), overlay, alpha

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        status, errors, ms = [], [], []
        for source, stem in zip(batch["input"], batch["stem"], strict=True):
            start = time.perf_counter()
            state, error = self._one(str(source), str(stem))
            status.append(state)
            errors.append(error)
            ms.append((time.perf_counter() - start) * 1e3)
        return {**batch, "status": np.array(status), "error": np.array(errors), "ms": np.array(ms)}

    def _one(self, source: str, stem: str) -> tuple[str, str]:
        """Segment one image unless its outputs exist; (status, error message)."""
        if outputs_present(self.out, stem, self.overlay):  # another run wrote it meanwhile
            return "skipped", ""
        try:
            image = _read(source)
            mask = self.segmenter.predict(image).mask
            palette = self.segmenter.card.palette
            write_prediction(self.out, stem, image, mask, palette, self.overlay, self.alpha)
        except (AtrousError, OSError) as exc:  # one bad image does not stop the dataset
            return "failed", str(exc) if str(exc).startswith(source) else f"{source}: {exc}"
        return "written", ""


def _connect(address: str | None) -> bool:
    """Join the Ray cluster at ``address`` (or start a local instance); True if this call
    started Ray (and so should stop it)."""
    try:
        import ray
    except ImportError:
        raise AtrousError("Ray is not installed: pip install 'atrous[ray]'") from None

    if ray.is_initialized():
        return False
    if address is None or address == "local":
        ray.init(num_cpus=LOCAL_CPUS, include_dashboard=False, configure_logging=False)
    else:
        ray.init(address=address, configure_logging=False)
    return True


def segment_dataset(
    model: str | Path,
    inputs: str | list[str],
    out: str | Path,
    *,
    address: str | None = None,
    engine: str = "auto",
    threads: int = 1,
    actors: int = 2,
    overlay: bool = True,
    alpha: float = 0.5,
    batch_size: int = 4,
    progress: Callable[[dict], None] | None = None,
) -> BatchSummary:
    """Segment every image of ``inputs`` on Ray and write ``atrous predict``'s outputs to ``out``.

    ``address``: a Ray cluster (``auto`` for the one ``ray start`` made here, ``ray://host:port``);
    None starts a local instance of LOCAL_CPUS CPUs. ``actors`` engines of ``threads`` threads
    each; the model file, inputs and ``out`` must be reachable from every node (shared storage
    or URIs). ``progress`` is called with each image's manifest record as it finishes.
    """
    if threads < 1 or actors < 1:
        raise InputError(f"threads and actors must be at least 1, got {threads} and {actors}")
    out = Path(out).absolute()  # actors may run in another working folder
    model = Path(model).absolute() if Path(model).exists() else model
    images = list_images(inputs)
    out.mkdir(parents=True, exist_ok=True)
    records = {
        src: _record(src, stem, out, overlay, "skipped")
        for src, stem in images
        if outputs_present(out, stem, overlay)
    }
    todo = [{"input": src, "stem": stem} for src, stem in images if src not in records]
    started, start = _connect(address) if todo else False, time.perf_counter()
    try:
        if todo:
            import ray

            settings = {"model": str(model), "engine": engine, "threads": threads}
            settings.update(out=str(out), overlay=overlay, alpha=alpha)
            dataset = ray.data.from_items(todo).map_batches(
                _SegmentActor,
                fn_constructor_kwargs=settings,
                compute=ray.data.ActorPoolStrategy(size=actors),
                num_cpus=threads,
                batch_size=batch_size,
            )
            for row in dataset.iter_rows():
                record = _record(row["input"], row["stem"], out, overlay, str(row["status"]))
                record.update(error=str(row["error"]) or None, ms=round(float(row["ms"]), 2))
                records[record["input"]] = record
                if progress is not None:
                    progress(record)
    finally:
        seconds = time.perf_counter() - start
        _write_manifest(out / MANIFEST, images, records, overlay)
        if started:
            import ray

            ray.shutdown()
    counts = {s: sum(r["status"] == s for r in records.values()) for s in ("written", "skipped")}
    failed = sum(r["status"] == "failed" for r in records.values())
    return BatchSummary(
        total=len(images),
        written=counts["written"],
        skipped=counts["skipped"],
        failed=failed,
        seconds=seconds,
        images_per_second=counts["written"] / seconds if seconds > 0 else 0.0,
        actors=actors,
        threads=threads,
        manifest=str(out / MANIFEST),
    )


def _record(source: str, stem: str, out: Path, overlay: bool, status: str) -> dict:
    """One manifest line: the input, its output files, its status."""
    files = [str(p) for p in output_files(out, stem, overlay)]
    return {"input": source, "outputs": files, "status": status}


def _write_manifest(
    path: Path, images: list[tuple[str, str]], records: dict, overlay: bool
) -> None:
    """Every image's record in input order (``pending`` when a stopped run never reached it)."""
    lines = []
    for source, stem in images:
        record = records.get(source) or _record(source, stem, path.parent, overlay, "pending")
        lines.append(json.dumps(record))
    atomic_write_text(path, "\n".join(lines) + "\n")
