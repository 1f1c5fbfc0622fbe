"""The fast graph of a model, exported once and cached under ``$ATROUS_CACHE/fast`` (default
``~/.cache/atrous/fast``), keyed by the weights, card, label stride and graph version."""

from __future__ import annotations

import hashlib
from pathlib import Path

import cv2
from torch import nn

from atrous.card import ModelCard
from atrous.fastpath.graph import FAST_GRAPH_VERSION, export_fast_onnx
from atrous.fastpath.modules import DEFAULT_LABEL_STRIDE
from atrous.runtimes import Engine, load_exported
from atrous.runtimes.auto import cache_dir as atrous_cache_dir
from atrous.sources import load_source

__all__ = ["cached_fast_graph", "fast_graph_engine"]


def _cache_key(model: nn.Module, card: ModelCard, label_stride: int) -> str:
    """Weights, card, label stride and the graph's layout version: a cached graph that an
    older atrous wrote (before channel padding, or with the BGR normalisation bug) is rebuilt."""
    digest = hashlib.sha256(f"fast-graph-v{FAST_GRAPH_VERSION}".encode())
    digest.update(card.to_json().encode())
    digest.update(str(label_stride).encode())
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


def cached_fast_graph(
    net: nn.Module,
    card: ModelCard,
    label_stride: int = DEFAULT_LABEL_STRIDE,
    cache_dir: str | Path | None = None,
) -> Path:
    """The fp32 fast graph of ``net`` in ``cache_dir`` (default ``$ATROUS_CACHE/fast``),
    exported on the first call."""
    cache = Path(cache_dir) if cache_dir else atrous_cache_dir() / "fast"
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / f"{card.name}-s{label_stride}-{_cache_key(net, card, label_stride)}.onnx"
    if not path.exists():
        export_fast_onnx(net, card, path, label_stride=label_stride)
    return path


def fast_graph_engine(
    model: str | Path | tuple[nn.Module, ModelCard],
    *,
    threads: int | None = None,
    label_stride: int = DEFAULT_LABEL_STRIDE,
    cache_dir: str | Path | None = None,
) -> tuple[Engine, ModelCard]:
    """ONNX Runtime on the (cached) fast graph of a checkpoint, zoo name or (model, card) pair,
    with the graph's card. OpenCV is limited to one thread so that pre/postprocessing does not
    compete with ONNX Runtime's intra-op threads."""
    net, card = model if isinstance(model, tuple) else load_source(model)
    path = cached_fast_graph(net, card, label_stride, cache_dir)
    cv2.setNumThreads(1)
    return load_exported(path, "onnxruntime", threads)
