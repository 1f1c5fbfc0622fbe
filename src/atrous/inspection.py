"""Describe a model file or zoo name: architecture, costs per stage, file size and card."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from atrous.card import card_from_json
from atrous.checkpoint import load_state_dict_checked, plain_state_dict, read_checkpoint
from atrous.config import ModelConfig
from atrous.cost import measure_cost
from atrous.errors import ModelError
from atrous.models.deeplab import DeepLab
from atrous.models.foreign.tflite import from_tflite
from atrous.models.introspect import config_from_state_dict
from atrous.models.zoo import default_card
from atrous.registry import get_backbone
from atrous.runtimes import model_file_mb, output_names, read_exported_card
from atrous.sources import RANDOM_WEIGHTS, classify

__all__ = ["inspect_model", "describe_config"]


_ARCH = {False: "DeepLabV3", True: "DeepLabV3+"}
_HEADS = {"aspp": "ASPP", "pooling": "image pooling + 1x1", "none": "none", "lraspp": "LR-ASPP"}


def describe_config(config: ModelConfig) -> dict[str, Any]:
    """The architecture facts users ask about, in words."""
    widths = "width_mult" in get_backbone(config.backbone).fields
    return {
        "arch": "LR-ASPP" if config.head == "lraspp" else _ARCH[config.decoder],
        "backbone": config.backbone + (f" x{config.width_mult}" if widths else ""),
        "output_stride": config.output_stride,
        "head": _HEADS[config.head] + (" + 3x3 conv" if config.head_conv else ""),
        "atrous_rates": list(config.resolved_rates()),
        "separable_aspp": config.separable_aspp,
        "decoder": config.decoder,
        "aux_head": config.aux_loss,
        "num_classes": config.num_classes,
    }


def _tflite_layout(path: Path) -> tuple[str, ModelConfig | None]:
    """The layout a .tflite is in ('TF DeepLab zoo (MobileNetV2 dm0.5)', with the config it
    describes) or, for another graph, what it looked like (and None)."""
    try:
        found = from_tflite(path)
    except ModelError as exc:
        return str(exc).removeprefix(f"{path}: "), None
    return found.layout, found.model.config


def inspect_model(
    source: str | Path,
    input_size: tuple[int, int] | None = None,
    contract: list[str] | None = None,
) -> dict[str, Any]:
    """Everything ``atrous inspect`` shows, as a dict (checkpoint, plain state_dict or zoo name).

    Multiply-adds are counted at ``input_size``; by default at the size a fixed-size file runs
    at (a .tflite), else 513 x 513.

    For exported files the card comes from metadata, a sidecar or the inferred contract, with
    ``contract`` overrides (``key=value``) applied.
    """
    found = classify(source)
    text, path = found.text, found.path
    info: dict[str, Any] = {"source": text}
    card = None
    if found.kind == "zoo":
        card = default_card(text).model_copy(update={"weights": RANDOM_WEIGHTS})
        config = card.model
        info["origin"] = "zoo (random weights)"
    elif found.kind == "checkpoint":
        data = read_checkpoint(path)
        info["file_mb"] = path.stat().st_size / 1e6
        if "card" in data:
            card = card_from_json(data["card"], text)
            config = card.model
            if config is not None:
                load_state_dict_checked(DeepLab(config), data.get("state_dict", {}), text)
            info["origin"] = "checkpoint with model card"
        else:
            state, card = plain_state_dict(data, text)
            if card is not None:  # a foreign layout, mapped
                config = card.model
                load_state_dict_checked(DeepLab(config), state, text)
                info["origin"] = f"{card.provenance.source} state_dict (mapped to atrous)"
            else:
                config = config_from_state_dict(state, text)
                info["origin"] = (
                    "plain state_dict (architecture inferred from weights; output stride unknown)"
                )
    else:
        card, card_origin = read_exported_card(path, contract)
        config = card.model
        origin = "its signature (no card inside)" if card_origin == "inferred" else card_origin
        info["origin"] = f"{path.suffix[1:]} file, card from {origin}"
        info["file_mb"] = model_file_mb(path)
        info["outputs"] = output_names(path)
        if path.suffix.lower() == ".tflite":
            info["layout"], imported = _tflite_layout(path)
            if config is None and imported is not None:
                config = imported  # a foreign TF DeepLab file: the architecture it describes
    if config is not None:
        info["architecture"] = describe_config(config)
        if input_size is None:
            pre = card.preprocessing if card is not None else None
            fixed = pre is not None and pre.resize in ("fixed", "shorter") and pre.size
            input_size = (pre.size, pre.size) if fixed else (513, 513)
        cost = measure_cost(DeepLab(config), input_size)
        info["params"] = cost.params
        info["gmacs"] = cost.gmacs
        info["input_size"] = list(input_size)
        info["macs_by_stage"] = {k: v / 1e9 for k, v in cost.by_stage.items()}
    if card is not None:
        info["card"] = card.model_dump(mode="json", exclude={"model"})
    return info
