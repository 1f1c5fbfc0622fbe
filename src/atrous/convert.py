"""Turn weights files into atrous checkpoints: ``atrous convert`` and published weights.

:func:`convert_checkpoint` reads any file :func:`atrous.checkpoint.load_checkpoint` can rebuild
a model from (an atrous checkpoint, or a plain state_dict given the zoo name of its
architecture), writes an atrous checkpoint whose card records where the weights came from
(source, SHA-256, licence), and reports which of the file's tensors went where. A file that fits
no known layout is refused in one line naming what it looked like (top-level keys, prefixes).

:func:`pretrained_checkpoint` does the same for a zoo entry's published weights (or a local
weights file), once: the converted checkpoint stays in the cache, so later calls need no network
and no conversion.
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from atrous.card import ModelCard, WeightsFacts
from atrous.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from atrous.errors import ModelError
from atrous.models.foreign import foreign_layout, from_tflite, unwrap_state_dict
from atrous.models.zoo import get_weights
from atrous.palettes import voc_palette
from atrous.weights import Weights, cache_dir, fetch, sha256_of

__all__ = [
    "ConversionReport",
    "convert_checkpoint",
    "describe_layout",
    "mapping_report",
    "pretrained_checkpoint",
]


@dataclass
class ConversionReport:
    """Which tensors of a source file went where.

    ``mapped``: source tensors loaded as they were; ``reshaped``: loaded with another shape
    (same values); ``unmapped``: source tensors the model did not take; ``initialised``: model
    tensors no source tensor fills (pairs are matched by value, so equal tensors are
    interchangeable).
    """

    source: str
    out: str
    layout: str
    mapped: list[str] = field(default_factory=list)
    reshaped: list[str] = field(default_factory=list)
    unmapped: list[str] = field(default_factory=list)
    initialised: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The report as plain data (counts and names)."""
        counts = {k: len(getattr(self, k)) for k in ("mapped", "reshaped", "unmapped")}
        return {
            "source": self.source,
            "out": self.out,
            "layout": self.layout,
            **{f"{k}_count": v for k, v in counts.items()},
            "initialised_count": len(self.initialised),
            "reshaped": self.reshaped,
            "unmapped": self.unmapped,
            "initialised": self.initialised,
        }


def _tensors(data: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The tensors of a loaded file: its state_dict (or ``model``) entry, else its top level."""
    for key in ("state_dict", "model"):
        if isinstance(data.get(key), dict):
            data = data[key]
            break
    return {k: v for k, v in data.items() if isinstance(v, torch.Tensor)}


def describe_layout(data: dict[str, Any]) -> str:
    """What a loaded file looks like, in one line: top-level keys (or, for a plain state_dict,
    its size) and the commonest key prefixes of its tensors."""
    tensors = _tensors(data)
    if len(tensors) == len(data):
        top = f"a plain state_dict of {len(data)} tensors"
    else:
        top = "top-level keys: " + ", ".join(sorted(map(str, data))[:6])
        top += " ..." if len(data) > 6 else ""
    prefixes = Counter(str(k).split(".", 1)[0] + "." for k in tensors if "." in str(k))
    ranked = sorted(prefixes.items(), key=lambda item: (-item[1], item[0]))[:5]
    return f"{top}; tensor prefixes: {', '.join(f'{p} ({n})' for p, n in ranked) or 'none'}"


def _digest(tensor: torch.Tensor) -> str:
    """A tensor's values (not its shape) as a hash."""
    flat = tensor.detach().cpu().contiguous().reshape(-1)
    return hashlib.sha1(flat.numpy().tobytes() + str(flat.dtype).encode()).hexdigest()


def mapping_report(
    source: dict[str, torch.Tensor], model: dict[str, torch.Tensor]
) -> tuple[list[str], list[str], list[str], list[str]]:
    """(mapped, reshaped, unmapped, initialised) key lists, matching tensors by value: a key
    mapping of any kind is reported without knowing it."""
    pending: dict[str, list[str]] = defaultdict(list)
    for key, tensor in source.items():
        pending[_digest(tensor)].append(key)
    mapped, reshaped, initialised = [], [], []
    for key, tensor in model.items():
        keys = pending.get(_digest(tensor))
        if not keys:
            initialised.append(key)
            continue
        same = [k for k in keys if source[k].shape == tensor.shape]
        picked = same[0] if same else keys[0]
        keys.remove(picked)
        (mapped if same else reshaped).append(picked)
    unmapped = [k for keys in pending.values() for k in keys]
    return mapped, reshaped, unmapped, initialised


def _load(path: Path, zoo_name: str | None) -> tuple[torch.nn.Module, ModelCard, dict]:
    """The model and card a file rebuilds, and its raw dict; a file fitting no known layout is
    refused in one line naming what it looked like."""
    data = read_checkpoint(path)
    try:
        model, card = load_checkpoint(path, zoo_name=zoo_name)
    except ModelError as exc:
        reason = str(exc).removeprefix(f"{path}: ")
        raise ModelError(
            f"{path}: matches no known layout ({describe_layout(data)}); {reason}"
        ) from None
    return model, card, data


def convert_checkpoint(
    source: str | Path,
    out: str | Path,
    zoo_name: str | None = None,
    licence: str | None = None,
) -> ConversionReport:
    """Write ``source`` (any file ``load_checkpoint`` reads) as an atrous checkpoint at ``out``,
    its card recording the source file, its SHA-256 and ``licence``; returns the mapping."""
    path = Path(source)
    if path.suffix.lower() == ".tflite":
        return _convert_tflite(path, Path(out), licence)
    model, card, data = _load(path, zoo_name)
    before = card.weights
    facts = WeightsFacts(
        origin="converted",
        source=str(path),
        sha256=sha256_of(path),
        licence=licence or (before.licence if before else None),
        published=before.published if before else {},
    )
    save_checkpoint(out, model, card.model_copy(update={"weights": facts}))
    mapped, reshaped, unmapped, initialised = mapping_report(_tensors(data), model.state_dict())
    foreign = foreign_layout(unwrap_state_dict(data)) if "card" not in data else None
    layout = "atrous checkpoint" if "card" in data else f"plain state_dict ({zoo_name})"
    layout = f"{foreign} state_dict" if foreign else layout
    return ConversionReport(str(path), str(out), layout, mapped, reshaped, unmapped, initialised)


def _convert_tflite(path: Path, out: Path, licence: str | None) -> ConversionReport:
    """A TF DeepLab zoo .tflite as an atrous checkpoint (licence 'unknown' unless given)."""
    found = from_tflite(path)
    facts = WeightsFacts(
        origin="converted", source=str(path), sha256=sha256_of(path), licence=licence or "unknown"
    )
    save_checkpoint(out, found.model, found.card.model_copy(update={"weights": facts}))
    return ConversionReport(str(path), str(out), found.layout, **found.mapping)


def _published_card(card: ModelCard, record: Weights) -> ModelCard:
    """``card`` with a published record's facts: weights provenance, classes, preprocessing."""
    update: dict[str, Any] = {
        "weights": WeightsFacts(
            origin="published",
            name=record.name,
            source=record.source,
            url=record.url,
            sha256=record.sha256,
            licence=record.licence,
            published=record.published,
        )
    }
    if record.classes is not None:
        update.update(classes=list(record.classes), palette=voc_palette(len(record.classes)))
    if record.preprocessing is not None:
        update["preprocessing"] = record.preprocessing
    return card.model_copy(update=update)


def pretrained_checkpoint(name: str, weights: str) -> Path:
    """The atrous checkpoint of zoo entry ``name`` with ``weights``: a published weights name
    (downloaded once, hash-checked, converted once) or a local weights file; cached."""
    local = Path(weights)
    if local.is_file():
        target = cache_dir() / "checkpoints" / f"{name}-{sha256_of(local)[:16]}.pt"
        if not target.is_file():
            convert_checkpoint(local, target, zoo_name=name)
        return target
    record = get_weights(name, weights)
    target = cache_dir() / "checkpoints" / f"{name}-{record.name}-{record.sha256[:16]}.pt"
    if not target.is_file():
        model, card = load_checkpoint(fetch(record), zoo_name=name)
        save_checkpoint(target, model, _published_card(card, record))
    return target
