"""The model card: everything a consumer needs to use a model file, carried inside it.

Checkpoints, ONNX metadata and OpenVINO IR all store the same card as JSON, so train, evaluate,
export and the segmenter read one contract instead of re-deriving it.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any, Literal

from pydantic import Field, ValidationError

from atrous.config import ModelConfig, Preprocessing, StrictModel
from atrous.errors import ModelError

__all__ = ["ModelCard", "Provenance", "card_from_json"]


class Provenance(StrictModel):
    """Where a model came from: zoo entry, data, training run, library version, time."""

    zoo_name: str | None = None
    dataset: str | None = None
    created: str = Field(default_factory=lambda: datetime.now(timezone.utc).isoformat())
    atrous_version: str = "0.1.0"
    source: str | None = None
    notes: dict[str, Any] = Field(default_factory=dict)


class ModelCard(StrictModel):
    """A model's architecture, classes, palette, input contract, output contract and provenance.

    ``output`` says what the network returns: 'logits' (N, C, H, W), 'labels' (N, H, W uint8,
    argmax inside the graph) or 'probability' (N, 1, H, W foreground probability).
    """

    name: str
    model: ModelConfig | None = None
    classes: list[str]
    palette: list[tuple[int, int, int]]
    preprocessing: Preprocessing = Field(default_factory=Preprocessing)
    output: Literal["logits", "labels", "probability"] = "logits"
    ignore_index: int = 255
    metrics: dict[str, Any] = Field(default_factory=dict)
    provenance: Provenance = Field(default_factory=Provenance)

    @property
    def num_classes(self) -> int:
        """Number of classes the model predicts."""
        return len(self.classes)

    def to_json(self) -> str:
        """Serialise to compact JSON (stored in checkpoints and model metadata)."""
        return self.model_dump_json()


def card_from_json(text: str | bytes | dict[str, Any], source: str = "model") -> ModelCard:
    """Parse a card, raising ModelError naming ``source`` when it is malformed."""
    try:
        data = json.loads(text) if isinstance(text, str | bytes) else text
        return ModelCard.model_validate(data)
    except (ValueError, ValidationError) as exc:
        first = str(exc)
        if isinstance(exc, ValidationError):
            error = exc.errors()[0]
            where = ".".join(str(part) for part in error["loc"])
            first = f"{where}: {error['msg']}" if where else error["msg"]
        raise ModelError(f"{source}: malformed model card: {first}") from None
