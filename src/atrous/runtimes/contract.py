"""Contracts for foreign models: infer a model card from a file's input/output signature.

A published DeepLab .tflite or a person-segmentation model carries no atrous card. Its tensors
still say most of it: layout (where the 3 colour channels are), input dtype (uint8 means raw
pixels), a fixed size, the number of classes, and a single-channel output meaning a foreground
probability. The normalisation of a float input is read from the file's metadata where it says
(TFLite metadata NormalizationOptions, ONNX ``metadata_props`` mean/std); otherwise it is a
guess, [-1, 1], recorded in the card's ``assumed`` section so every verb can say so. A fixed
non-square input (MediaPipe's 144x256 landscape models) is reached by stretching the image to
it, also a guess said aloud (``preprocessing.resize=letterbox`` keeps the aspect ratio). The
output read is the first unless ``output_tensor`` names another (by name or index). Anything
can be overridden with ``key=value`` pairs, e.g. ``preprocessing.mean=[0,0,0]``,
``output=logits`` or ``output_tensor=segment_back``, or a sidecar card
``<model file>.card.json``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from atrous.card import ModelCard, Provenance, card_from_json
from atrous.config import Preprocessing, apply_overrides
from atrous.data.palettes import VOC_CLASSES, voc_palette
from atrous.errors import ModelError
from atrous.runtimes.file_metadata import metadata_normalisation

__all__ = [
    "Signature",
    "infer_card",
    "override_card",
    "check_card",
    "StandardOutput",
    "FLOAT_INPUT_RANGE",
    "SIDECAR_SUFFIX",
    "sidecar_card",
    "NORMALISATION",
    "RESIZE",
]

# Float inputs of foreign models default to [-1, 1] (x / 127.5 - 1), the TensorFlow DeepLab and
# MobileNet convention; override preprocessing.mean/std for models trained otherwise.
FLOAT_INPUT_RANGE = (-1.0, 1.0)
SIDECAR_SUFFIX = ".card.json"
NORMALISATION = "normalisation"  # the key of a guessed normalisation in ModelCard.assumed
RESIZE = "resize"  # the key of a guessed resize policy (fixed non-square input)
# the override keys that settle each guess: the user said it
_SETTLED_BY = {
    NORMALISATION: {"preprocessing", "preprocessing.mean", "preprocessing.std"},
    RESIZE: {"preprocessing", "preprocessing.resize"},
}


@dataclass(frozen=True)
class Signature:
    """A model's single input and the output read (the first unless the card selects another):
    shapes (None for dynamic dims) and dtypes."""

    input_shape: tuple[int | None, ...]
    input_dtype: np.dtype
    output_shape: tuple[int | None, ...]
    output_dtype: np.dtype
    input_quantization: tuple[float, int] | None = None


def _layout(shape: tuple[int | None, ...], source: str) -> str:
    if len(shape) != 4:
        raise ModelError(f"{source}: expected a 4-D image input, got shape {list(shape)}")
    if shape[1] == 3:
        return "NCHW"
    if shape[3] == 3:
        return "NHWC"
    raise ModelError(f"{source}: cannot find 3 colour channels in input shape {list(shape)}")


def infer_card(signature: Signature, source: str) -> ModelCard:
    """A card for a model without one, from its signature (see the module docstring)."""
    shape = signature.input_shape
    layout = _layout(shape, source)
    h, w = (shape[2], shape[3]) if layout == "NCHW" else (shape[1], shape[2])
    mean, std, assumed = _normalisation(signature, source)
    geometry: dict[str, Any] = {"resize": "longest", "size": 513, "pad_multiple": 8}
    if h is not None and w is not None and h == w:
        geometry = {"resize": "fixed", "size": int(h), "pad_multiple": 1}
    elif h is not None and w is not None:
        geometry = {"resize": "stretch", "size": int(max(h, w)), "input_size": (int(h), int(w))}
        geometry["pad_multiple"] = 1
        assumed[RESIZE] = (
            f"fixed non-square input {h}x{w}: images stretched to it (aspect ratio not kept); "
            "preprocessing.resize=letterbox keeps it"
        )
    pre = Preprocessing(mean=mean, std=std, layout=layout, **geometry)
    output, classes = _output_kind(signature, layout, source)
    return ModelCard(
        name=Path(source).stem,
        classes=classes,
        palette=voc_palette(len(classes)),
        preprocessing=pre,
        output=output,
        provenance=Provenance(source=source, notes={"contract": "inferred from the signature"}),
        assumed=assumed,
    )


Triple = tuple[float, float, float]


def _normalisation(signature: Signature, source: str) -> tuple[Triple, Triple, dict[str, str]]:
    """Mean and std of the input, and what was guessed: exact for quantized and integer inputs,
    read from the file's metadata for float ones when it says, else the [-1, 1] guess."""
    if signature.input_quantization is not None:
        # the model sees (q - zero) * scale for pixel q: exactly the normalisation it was trained on
        scale, zero = signature.input_quantization
        return (zero / 255.0,) * 3, (1 / (255.0 * scale),) * 3, {}
    if np.issubdtype(signature.input_dtype, np.integer):
        return (0.0, 0.0, 0.0), (1 / 255, 1 / 255, 1 / 255), {}  # feed raw pixel values
    found = metadata_normalisation(Path(source))
    if found is not None:
        return found[0], found[1], {}
    lo, hi = FLOAT_INPUT_RANGE  # x / 255 * (hi - lo) + lo == (x / 255 - mean) / std
    why = (
        f"float input assumed in [{lo:g}, {hi:g}] (x / 127.5 - 1, the TensorFlow convention); "
        "the file's metadata does not say"
    )
    return (-lo / (hi - lo),) * 3, (1 / (hi - lo),) * 3, {NORMALISATION: why}


def _output_kind(signature: Signature, layout: str, source: str) -> tuple[str, list[str]]:
    """Output kind and class names: logits (C >= 2), probability (C == 1) or labels (3-D/int)."""
    shape = signature.output_shape
    integer = np.issubdtype(signature.output_dtype, np.integer)
    channel_axis = 3 if layout == "NHWC" else 1
    if len(shape) == 3 or (len(shape) == 4 and integer and shape[channel_axis] == 1):
        return "labels", _class_names(21)  # the class count is not in the signature: VOC
    if len(shape) != 4:
        raise ModelError(f"{source}: cannot read output shape {list(shape)} as a segmentation")
    channels = shape[channel_axis]
    if channels is None:
        raise ModelError(f"{source}: the number of classes (output channels) is not fixed")
    if channels == 1:
        return "probability", ["background", "foreground"]
    return "logits", _class_names(channels)


def _class_names(n: int) -> list[str]:
    """VOC names for 21 classes, else class_0 .. class_{n-1}."""
    if n == len(VOC_CLASSES):
        return list(VOC_CLASSES)
    return [f"class_{i}" for i in range(n)]


def check_card(card: ModelCard, signature: Signature, source: str) -> None:
    """Refuse a card (stored, sidecar or overridden) that contradicts the file's tensors."""
    layout = card.preprocessing.layout
    shape = signature.input_shape
    channel_in = shape[1] if layout == "NCHW" else shape[-1]
    if len(shape) == 4 and channel_in not in (3, None):
        raise ModelError(f"{source}: layout {layout} does not fit input shape {list(shape)}")
    out = signature.output_shape
    if card.output == "logits" and len(out) == 4:
        channels = out[1] if layout == "NCHW" else out[3]
        if channels is not None and channels != card.num_classes:
            raise ModelError(
                f"{source}: the model outputs {channels} channels but the card names "
                f"{card.num_classes} classes"
            )


def override_card(card: ModelCard, overrides: list[str], source: str) -> ModelCard:
    """Apply ``key=value`` overrides (e.g. ``preprocessing.layout=NHWC``) to a card."""
    if not overrides:
        return card
    data = apply_overrides(card.model_dump(mode="json"), list(overrides))
    keys = {o.split("=", 1)[0].strip() for o in overrides}
    if "classes" in keys:
        data["palette"] = voc_palette(len(data["classes"]))
    assumed = data.get("assumed", {})  # what the user said is no longer a guess
    data["assumed"] = {k: v for k, v in assumed.items() if not keys & _SETTLED_BY.get(k, set())}
    return card_from_json(data, f"{source} (with overrides {', '.join(overrides)})")


def sidecar_card(path: Path) -> ModelCard | None:
    """A card in ``<model file>.card.json`` beside the model, if there is one."""
    side = path.with_name(path.name + SIDECAR_SUFFIX)
    if not side.is_file():
        return None
    return card_from_json(side.read_text(encoding="utf-8"), str(side))


class StandardOutput:
    """Wraps a foreign model's engine so its output has the shapes every engine returns.

    NHWC outputs become NCHW; integer labels (N, H, W, 1) or (N, 1, H, W) become (N, H, W) uint8.
    """

    def __init__(self, engine: Any, layout: str, output: str) -> None:
        self.engine = engine
        self.layout = layout
        self.output = output
        self.name = engine.name
        self.threads = engine.threads

    def run(self, batch: np.ndarray) -> np.ndarray:
        """The wrapped engine's output in the standard shape."""
        out = self.engine.run(batch)
        if self.output == "labels":
            if out.ndim == 4:
                out = out[..., 0] if self.layout == "NHWC" else out[:, 0]
            return out.astype(np.uint8, copy=False)
        if out.ndim == 4 and self.layout == "NHWC":
            out = np.ascontiguousarray(out.transpose(0, 3, 1, 2))
        return out

    def describe(self) -> dict[str, Any]:
        """The wrapped engine's description, noting the output layout."""
        return {**self.engine.describe(), "output_layout": self.layout}
