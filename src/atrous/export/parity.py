"""Parity checks: an exported model must agree with the PyTorch reference on real-shaped inputs.

Inputs are synthetic photographs-like images (smooth gradients, blobs, edges, noise) preprocessed
by the card, so the values have the range and spatial structure the network sees in use.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import cv2
import numpy as np
import torch

from atrous.card import ModelCard
from atrous.errors import ModelError
from atrous.preprocess import Pipeline, predict_masks, preprocess, target_size
from atrous.runtimes import Engine

__all__ = [
    "ParityRow",
    "ParityReport",
    "check_parity",
    "held_out_agreement",
    "INT8_AGREEMENT_THRESHOLD",
    "synthetic_image",
    "sample_batch",
    "diversify",
    "AGREEMENT_THRESHOLD",
]

AGREEMENT_THRESHOLD = 0.999
# an int8 file against float PyTorch on held-out images: trained models reach 99.5% (the demo
# model as an int8 .tflite); a broken quantization (a wrong input scale) falls far below
INT8_AGREEMENT_THRESHOLD = 0.95


@dataclass(frozen=True)
class ParityRow:
    """Reference vs candidate at one input size."""

    engine: str
    size: tuple[int, int]
    max_abs_diff: float | None
    agreement: float
    classes_seen: int = 0
    threshold: float = AGREEMENT_THRESHOLD
    # "network": both engines fed the same tensor of ``size``; "original": masks of whole
    # pipelines (preprocess, engine, postprocess) on an image of ``size``, run at ``network_size``
    scope: str = "network"
    network_size: tuple[int, int] | None = None

    @property
    def ok(self) -> bool:
        """Argmax agreement at or above the threshold."""
        return self.agreement >= self.threshold


@dataclass
class ParityReport:
    """Rows of a parity check; ``raise_if_failed`` fails loudly under the agreement threshold."""

    reference: str
    rows: list[ParityRow] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Every size agrees at or above the threshold."""
        return all(r.ok for r in self.rows)

    def raise_if_failed(self, what: str = "export") -> None:
        """ModelError naming the worst size when any size is under the threshold."""
        bad = [r for r in self.rows if not r.ok]
        if bad:
            worst = min(bad, key=lambda r: r.agreement)
            h, w = worst.size
            raise ModelError(
                f"{what}: {worst.engine} disagrees with {self.reference} at {h}x{w}: "
                f"argmax agreement {worst.agreement:.4%} < {worst.threshold:.1%}"
            )

    def to_dict(self) -> dict:
        """Plain data for JSON output."""
        return {"reference": self.reference, "ok": self.ok, "rows": [asdict(r) for r in self.rows]}


def synthetic_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A deterministic RGB uint8 image with natural-image structure (not white noise)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    image = np.empty((height, width, 3), np.float32)
    for c in range(3):
        a, b, p = rng.uniform(-1, 1, 3)
        image[..., c] = 128 + 90 * np.sin(a * xx / 23 + b * yy / 31 + 6 * p)
    for _ in range(6):
        center = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        axes = (int(rng.integers(4, max(5, width // 3))), int(rng.integers(4, max(5, height // 3))))
        color = tuple(float(v) for v in rng.integers(0, 256, 3))
        cv2.ellipse(image, center, axes, float(rng.uniform(0, 180)), 0, 360, color, -1)
    image += rng.normal(0, 8, image.shape).astype(np.float32)
    return np.clip(image, 0, 255).astype(np.uint8)


def sample_batch(card: ModelCard, size: tuple[int, int], seed: int = 0) -> np.ndarray:
    """One preprocessed image of exactly ``size`` in the card's layout, normalisation and order.

    Uses the inference preprocessing (``atrous.preprocess``), so the check sees what users'
    inputs look like.
    """
    pre = card.preprocessing.model_copy(update={"resize": "none", "pad_multiple": 1})
    exact = card.model_copy(update={"preprocessing": pre})
    batch, _ = preprocess(exact, [synthetic_image(*size, seed=seed)])
    return batch


def diversify(model: torch.nn.Module, card: ModelCard, seed: int = 0) -> torch.nn.Module:
    """Give an untrained model weights whose argmax varies across the image (in place).

    Randomly initialised DeepLabs predict one class everywhere, which makes argmax agreement
    trivially 100%; He-initialised convolutions and a classifier bias centred on a sample image
    spread the labels over the classes, so parity checks and benchmarks on zoo models mean
    something.
    """
    torch.manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.Conv2d):
                torch.nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
                if module.bias is not None:
                    module.bias.zero_()
        classifier = model.classifier
        batch = torch.from_numpy(sample_batch(card, (129, 129), seed=seed + 99))
        classifier.bias -= model.eval()(batch).mean((0, 2, 3))
    return model


def labels_of(output: np.ndarray, kind: str) -> np.ndarray:
    """Class labels (N, H, W) from logits, labels or a foreground probability."""
    if kind == "labels":
        return output.astype(np.int64)
    if kind == "probability":
        return (output[:, 0] > 0.5).astype(np.int64)
    return output.argmax(1)


def check_parity(
    reference: Engine,
    candidate: Engine,
    card: ModelCard,
    sizes: list[tuple[int, int]],
    *,
    candidate_output: str | None = None,
    candidate_layout: str = "NCHW",
    seed: int = 0,
) -> ParityReport:
    """Run both engines on real-shaped inputs at each size; max abs diff and argmax agreement.

    ``card`` describes the reference's output; ``candidate_output`` the candidate's when it
    differs (e.g. 'labels' for a graph with the argmax inside: then no max abs diff);
    ``candidate_layout`` 'NHWC' feeds the candidate the same batch transposed (a .tflite).
    """
    kind = candidate_output or card.output
    report = ParityReport(reference=reference.name)
    for i, size in enumerate(sizes):
        batch = sample_batch(card, size, seed + i)
        ref = reference.run(batch)
        got = candidate.run(batch.transpose(0, 2, 3, 1) if candidate_layout == "NHWC" else batch)
        ref_labels, got_labels = labels_of(ref, card.output), labels_of(got, kind)
        if ref_labels.shape != got_labels.shape:
            raise ModelError(
                f"{candidate.name}: output shape {got.shape} does not match the reference "
                f"{ref.shape} at {size[0]}x{size[1]}"
            )
        diff = None
        if kind == card.output and kind != "labels":
            diff = float(np.max(np.abs(ref.astype(np.float64) - got.astype(np.float64))))
        agreement = float((ref_labels == got_labels).mean())
        seen = len(np.unique(ref_labels))
        report.rows.append(ParityRow(candidate.name, tuple(size), diff, agreement, seen))
    return report


def held_out_agreement(
    reference: Pipeline,
    candidate: Pipeline,
    images: list[np.ndarray],
    threshold: float = INT8_AGREEMENT_THRESHOLD,
) -> ParityReport:
    """Pixel agreement of two pipelines' masks (engine + card, e.g. Segmenters) at the images'
    original sizes, one row per image: end-to-end parity, and the check for a quantized file,
    whose logits are not meant to match the float ones closely."""
    report = ParityReport(reference=reference.engine.name)
    for image in images:
        (ref,) = predict_masks(reference.engine, reference.card, [image])
        (got,) = predict_masks(candidate.engine, candidate.card, [image])
        h, w = image.shape[:2]
        report.rows.append(
            ParityRow(
                candidate.engine.name,
                (int(h), int(w)),
                None,
                float((ref == got).mean()),
                len(np.unique(ref)),
                threshold,
                scope="original",
                network_size=target_size(candidate.card.preprocessing, h, w),
            )
        )
    return report
