"""Published weights: named records (URL, hash, licence, published figures) and a download cache.

A zoo entry carries its published weights as :class:`Weights` records, the way torchvision's
``Weights`` enums do. :func:`fetch` downloads a record's file once into the cache (``$ATROUS_HOME``,
else ``$XDG_CACHE_HOME/atrous``, else ``~/.cache/atrous``), checks its SHA-256 before the file
takes its final name (a download that is cut, too large or of the wrong hash leaves nothing in
the cache), and afterwards works offline: a cached file is used without any network.
``ATROUS_OFFLINE=1`` refuses to download at all.

Files are read with ``torch.load(weights_only=True)``: nothing in a downloaded file runs.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch

from atrous._atomic import atomic_path
from atrous.config import Preprocessing
from atrous.errors import ModelError

__all__ = [
    "MAX_DOWNLOAD_BYTES",
    "TORCHVISION_WEIGHTS",
    "Weights",
    "cache_dir",
    "cached_path",
    "fetch",
    "read_state_dict",
    "sha256_of",
]

MAX_DOWNLOAD_BYTES = 2 * 1024**3  # no published DeepLab checkpoint is near 2 GB
CHUNK = 1 << 20
TIMEOUT_S = 60.0
_DDP_PREFIXES = ("module.", "model.")  # DistributedDataParallel, Lightning


@dataclass(frozen=True)
class Weights:
    """One published set of weights for a zoo entry.

    Args:
        name: the name ``--weights`` takes (e.g. ``voc``, ``coco_with_voc_labels``).
        url: where the file is published (http, https or file URL).
        sha256: the file's SHA-256 in hex, or a prefix of at least 8 hex digits where the
            publisher gives only that (torchvision puts one in its file names).
        source: who publishes it (e.g. ``torchvision 0.28``).
        licence: the licence the weights are published under.
        published: figures as published: ``miou``, ``dataset``, ``protocol``.
        preprocessing: the preprocessing the weights expect (None: the entry's own).
        classes: class names of the weights (None: the entry's dataset classes).
        size: the file size in bytes, if known (a download larger than this is refused).
        layout: what the file holds: ``atrous`` (a checkpoint or atrous state_dict) or the
            name of the foreign layout it is converted from (``torchvision``).
    """

    name: str
    url: str
    sha256: str
    source: str
    licence: str
    published: dict[str, float | str] = field(default_factory=dict)
    preprocessing: Preprocessing | None = None
    classes: tuple[str, ...] | None = None
    size: int | None = None
    layout: str = "atrous"

    @property
    def filename(self) -> str:
        """The file name the cache stores it under (the URL's last part)."""
        return Path(urlparse(self.url).path).name or f"{self.name}.pt"


def cache_dir() -> Path:
    """Where downloads and converted checkpoints live: ``$ATROUS_HOME``, else the XDG cache."""
    home = os.environ.get("ATROUS_HOME")
    if home:
        return Path(home).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "atrous"


def cached_path(weights: Weights) -> Path:
    """The path a record's verified download has in the cache (whether or not it is there)."""
    return cache_dir() / "weights" / weights.filename


def sha256_of(path: Path) -> str:
    """The SHA-256 of a file, in hex."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _hash_matches(actual: str, expected: str) -> bool:
    """Whether ``actual`` (full hex) is ``expected`` (full hex or a published prefix)."""
    return len(expected) >= 8 and actual.startswith(expected.lower())


def fetch(weights: Weights) -> Path:
    """The verified local file of ``weights``: from the cache, else downloaded once into it.

    A cached file whose hash no longer matches is refused (ModelError naming it); delete it to
    download again.
    """
    path = cached_path(weights)
    if path.is_file():
        if not _hash_matches(sha256_of(path), weights.sha256):
            raise ModelError(f"{path}: cached file does not match its SHA-256; delete it")
        return path
    if os.environ.get("ATROUS_OFFLINE") == "1":
        raise ModelError(f"{weights.url}: not in the cache ({path}) and ATROUS_OFFLINE=1")
    _download(weights, path)
    return path


def _download(weights: Weights, path: Path) -> None:
    """Download ``weights`` to ``path`` atomically: the hash is checked before the rename."""
    limit = weights.size if weights.size is not None else MAX_DOWNLOAD_BYTES
    digest, written = hashlib.sha256(), 0
    try:
        with atomic_path(path) as tmp, urllib.request.urlopen(weights.url, timeout=TIMEOUT_S) as r:
            with tmp.open("wb") as f:
                while chunk := r.read(CHUNK):
                    written += len(chunk)
                    if written > limit:
                        raise ModelError(f"{weights.url}: download larger than {limit} bytes")
                    digest.update(chunk)
                    f.write(chunk)
            if not _hash_matches(digest.hexdigest(), weights.sha256):
                raise ModelError(
                    f"{weights.url}: download does not match its SHA-256 "
                    f"(got {digest.hexdigest()[:16]}..., expected {weights.sha256[:16]}...); "
                    "nothing was cached"
                )
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise ModelError(f"{weights.url}: download failed ({reason})") from None


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a weights file (an atrous checkpoint, ``{'model': sd}``, ``{'state_dict':
    sd}`` or a plain state_dict), DDP ``module.`` / Lightning ``model.`` prefixes removed."""
    try:
        data: Any = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - nothing runs under weights_only: any error is a bad file
        raise ModelError(f"{path}: not a readable weights file ({type(exc).__name__})") from None
    if isinstance(data, dict):
        for key in ("state_dict", "model"):
            if isinstance(data.get(key), dict):
                data = data[key]
                break
    if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise ModelError(f"{path}: not a state_dict (values are not all tensors)")
    for prefix in _DDP_PREFIXES:
        if data and all(k.startswith(prefix) for k in data):
            data = {k[len(prefix) :]: v for k, v in data.items()}
    return data


_TV = "https://download.pytorch.org/models"
_TV_PROTOCOL = "torchvision: COCO val2017 subset in the 20 VOC categories, resize 520"

# torchvision's published segmentation weights (torchvision/models/segmentation/*.py,
# COCO_WITH_VOC_LABELS_V1): the hash is the prefix torchvision publishes in the file name. They
# load into the torchvision-identical architectures, keyed by the zoo name that builds them; the
# preprocessing (resize 520, ImageNet mean/std) is those entries' own.
TORCHVISION_WEIGHTS: dict[str, Weights] = {
    name: Weights(
        name="coco_with_voc_labels",
        url=f"{_TV}/{file}",
        sha256=file.rsplit("-", 1)[1].split(".")[0],
        source="torchvision (COCO_WITH_VOC_LABELS_V1)",
        licence="BSD-3-Clause (torchvision)",
        published={"miou": miou, "dataset": "coco-voc", "protocol": _TV_PROTOCOL},
        layout="torchvision",
    )
    for name, file, miou in (
        ("deeplabv3_resnet50", "deeplabv3_resnet50_coco-cd0a2569.pth", 66.4),
        ("deeplabv3_resnet101", "deeplabv3_resnet101_coco-586e9e4e.pth", 67.4),
        ("deeplabv3_mobilenet_v3_large", "deeplabv3_mobilenet_v3_large-fc3c493d.pth", 60.3),
        ("lraspp_mobilenet_v3_large", "lraspp_mobilenet_v3_large-d234d4ea.pth", 57.9),
    )
}
