"""The one evaluator: a dataset-level confusion matrix turned into IoU and accuracy tables.

Every engine is scored through ``Segmenter`` on raw dataset images, at the label's original
resolution, with ignore pixels (255) left out and background counted as a class. Other
projects' protocols exist only as named options, and every result carries its protocol's name.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from atrous._atomic import atomic_path
from atrous.card import ModelCard
from atrous.data.dataset import IGNORE_INDEX, SegmentationDataset
from atrous.errors import InputError
from atrous.segmenter import Segmenter

__all__ = [
    "ConfusionMatrix",
    "EvalResult",
    "PROTOCOLS",
    "evaluate",
    "parse_scales",
    "plot_confusion",
    "plot_formats",
]

PROTOCOLS = {
    "dataset": "dataset-level confusion matrix at the label's original size, 255 ignored, "
    "card preprocessing",
    "tf-pad513": "TF DeepLab: no resize, pad to 513x513, dataset-level, 255 ignored",
    "torchvision-520": "torchvision reference: image and label resized to shorter side 520 "
    "(label nearest), dataset-level at that size, 255 ignored",
    "per-image": "ST evaluator: mean over images of IoU over classes present, 255 counted as "
    "background, scored at network input size",
}


class ConfusionMatrix:
    """Accumulates a (num_classes x num_classes) matrix: rows are labels, columns predictions.

    Pixels labelled ``ignore_index`` are skipped; any other label or prediction outside
    0..num_classes-1 is an error rather than silently dropped.
    """

    def __init__(self, num_classes: int, ignore_index: int = IGNORE_INDEX) -> None:
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.matrix = np.zeros((num_classes, num_classes), dtype=np.int64)

    def update(self, prediction: np.ndarray, label: np.ndarray, name: str = "label") -> None:
        """Add one prediction/label pair of equal shape."""
        if prediction.shape != label.shape:
            raise InputError(f"{name}: prediction {prediction.shape} vs label {label.shape}")
        n = self.num_classes
        valid = label != self.ignore_index
        target = label[valid].astype(np.int64)
        pred = prediction[valid].astype(np.int64)
        if target.size and target.max() >= n:
            raise InputError(f"{name}: label value {int(target.max())} outside the {n} classes")
        if pred.size and (pred.max() >= n or pred.min() < 0):
            raise InputError(f"{name}: prediction value {int(pred.max())} outside {n} classes")
        self.matrix += np.bincount(target * n + pred, minlength=n * n).reshape(n, n)

    def iou(self) -> np.ndarray:
        """Per-class IoU; NaN for classes absent from both labels and predictions."""
        tp = np.diag(self.matrix).astype(np.float64)
        union = self.matrix.sum(0) + self.matrix.sum(1) - tp
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(union > 0, tp / union, np.nan)

    def class_accuracy(self) -> np.ndarray:
        """Per-class recall (correct / labelled); NaN for classes with no labelled pixel."""
        tp = np.diag(self.matrix).astype(np.float64)
        support = self.matrix.sum(1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(support > 0, tp / support, np.nan)

    def miou(self) -> float:
        """Mean IoU over classes that occur (in labels or predictions)."""
        iou = self.iou()
        return float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan")

    def pixel_accuracy(self) -> float:
        """Correct pixels / labelled pixels."""
        total = self.matrix.sum()
        return float(np.trace(self.matrix) / total) if total else float("nan")

    def mean_accuracy(self) -> float:
        """Mean per-class recall over classes with labelled pixels."""
        acc = self.class_accuracy()
        return float(np.nanmean(acc)) if np.isfinite(acc).any() else float("nan")

    def fw_iou(self) -> float:
        """Frequency-weighted IoU: per-class IoU weighted by the class's share of labels."""
        support = self.matrix.sum(1).astype(np.float64)
        if not support.sum():
            return float("nan")
        iou = np.nan_to_num(self.iou())
        return float((support * iou).sum() / support.sum())


def _clean(value: float) -> float | None:
    return None if value is None or math.isnan(value) else round(float(value), 6)


@dataclass
class EvalResult:
    """Metrics of one evaluation run, with the protocol and options that produced them."""

    protocol: str
    classes: list[str]
    confusion: np.ndarray
    miou: float
    per_class_iou: list[float]
    pixel_accuracy: float
    mean_accuracy: float
    fw_iou: float
    images: int
    scales: tuple[float, ...] = (1.0,)
    flip: bool = False
    refine: bool = False
    seconds: float = 0.0
    engine: dict[str, Any] = field(default_factory=dict)

    @property
    def protocol_description(self) -> str:
        """The protocol in words."""
        return PROTOCOLS.get(self.protocol, self.protocol)

    def class_table(self) -> list[list]:
        """Rows of (class, IoU, accuracy) for printing."""
        acc = ConfusionMatrix(len(self.classes))
        acc.matrix = self.confusion
        return [
            [name, iou, a]
            for name, iou, a in zip(
                self.classes, self.per_class_iou, acc.class_accuracy(), strict=True
            )
        ]

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict (NaN becomes null)."""
        return {
            "protocol": self.protocol,
            "protocol_description": self.protocol_description,
            "miou": _clean(self.miou),
            "pixel_accuracy": _clean(self.pixel_accuracy),
            "mean_accuracy": _clean(self.mean_accuracy),
            "fw_iou": _clean(self.fw_iou),
            "per_class_iou": {
                c: _clean(v) for c, v in zip(self.classes, self.per_class_iou, strict=True)
            },
            "images": self.images,
            "scales": list(self.scales),
            "flip": self.flip,
            "refine": self.refine,
            "seconds": round(self.seconds, 3),
            "engine": self.engine,
            "confusion_matrix": self.confusion.tolist(),
        }


def parse_scales(text: str) -> tuple[float, ...]:
    """'1.0', '0.5,0.75,1.0' or 'start:step:stop' (stop included), e.g. '0.5:0.25:1.75'."""
    try:
        if ":" in text:
            start, step, stop = (float(v) for v in text.split(":"))
            count = int(round((stop - start) / step)) + 1
            scales = tuple(round(start + i * step, 6) for i in range(count))
        else:
            scales = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise InputError(f"scales '{text}': expected 1.0, 0.5,1.0 or start:step:stop") from None
    if not scales or min(scales) <= 0:
        raise InputError(f"scales '{text}': scales must be positive")
    return scales


def _protocol_card(card: ModelCard, protocol: str) -> ModelCard:
    """The card the segmenter uses under ``protocol`` (changes resize/pad only)."""
    pre = card.preprocessing
    if protocol == "tf-pad513":
        pre = pre.model_copy(update={"resize": "none", "size": None, "pad_multiple": 513})
    elif protocol == "torchvision-520":
        pre = pre.model_copy(update={"resize": "none", "size": None})
    else:
        return card
    return card.model_copy(update={"preprocessing": pre})


def _resize_pair(
    image: np.ndarray, label: np.ndarray, size: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Resize image (linear) and label (nearest only) to (height, width)."""
    h, w = size
    if (h, w) == label.shape:
        return image, label
    image = cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR)
    return image, cv2.resize(label, (w, h), interpolation=cv2.INTER_NEAREST)


def _predict(
    segmenter: Segmenter, image: np.ndarray, scales: Sequence[float], flip: bool, refine: bool
) -> np.ndarray:
    """Label map at the image's size: the plain path, or the argmax of the probabilities
    averaged over scales/flips and optionally refined."""
    if tuple(scales) == (1.0,) and not flip and not refine:
        return segmenter.predict(image).mask
    return segmenter.probabilities(image, scales, flip, refine).argmax(0).astype(np.uint8)


def _image_iou(prediction: np.ndarray, label: np.ndarray, num_classes: int) -> float:
    """Mean IoU of one image over the classes present in its label or prediction."""
    cm = ConfusionMatrix(num_classes)
    cm.update(prediction, label)
    return cm.miou()


def evaluate(
    segmenter: Segmenter,
    dataset: SegmentationDataset,
    *,
    protocol: str = "dataset",
    flip: bool = False,
    scales: Sequence[float] = (1.0,),
    refine: bool = False,
    limit: int | None = None,
    progress: bool = True,
) -> EvalResult:
    """Score ``segmenter`` on ``dataset`` under ``protocol``; any Engine, the same code.

    Args:
        protocol: one of PROTOCOLS; 'dataset' is the reference (see module docstring).
        flip: average with the horizontally mirrored prediction.
        scales: input-size multipliers whose softmax outputs are averaged.
        refine: snap the (averaged) probabilities to image edges with a guided filter
            (:mod:`atrous.refine`) before the argmax.
        limit: evaluate only the first ``limit`` samples.
        progress: show a rich progress bar.
    """
    if protocol not in PROTOCOLS:
        raise InputError(f"unknown protocol '{protocol}'; choose one of {', '.join(PROTOCOLS)}")
    num_classes = len(segmenter.card.classes)
    if len(dataset.classes) != num_classes:
        raise InputError(
            f"{dataset.name}: {len(dataset.classes)} classes but the model predicts {num_classes}"
        )
    seg = Segmenter(segmenter.engine, _protocol_card(segmenter.card, protocol))
    count = min(len(dataset), limit) if limit else len(dataset)
    cm = ConfusionMatrix(num_classes, dataset.ignore_index)
    image_ious: list[float] = []
    start = time.perf_counter()
    columns = (TextColumn("evaluating"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, transient=True, disable=not progress) as bar:
        task = bar.add_task("eval", total=count)
        for index in range(count):
            sample = dataset[index]
            image, label = sample.image, sample.mask
            if protocol == "torchvision-520":
                h, w = label.shape
                factor = 520 / min(h, w)
                image, label = _resize_pair(image, label, (round(h * factor), round(w * factor)))
            elif protocol == "per-image":
                image, label = _resize_pair(image, label, seg.target_size(*label.shape))
                label = np.where(label == dataset.ignore_index, 0, label).astype(np.uint8)
            prediction = _predict(seg, image, scales, flip, refine)
            cm.update(prediction, label, sample.source or sample.name)
            if protocol == "per-image":
                image_ious.append(_image_iou(prediction, label, num_classes))
            bar.advance(task)
    iou = cm.iou()
    miou = float(np.mean(image_ious)) if protocol == "per-image" else cm.miou()
    return EvalResult(
        protocol=protocol,
        classes=list(segmenter.card.classes),
        confusion=cm.matrix,
        miou=miou,
        per_class_iou=[float(v) for v in iou],
        pixel_accuracy=cm.pixel_accuracy(),
        mean_accuracy=cm.mean_accuracy(),
        fw_iou=cm.fw_iou(),
        images=count,
        scales=tuple(scales),
        flip=flip,
        refine=refine,
        seconds=time.perf_counter() - start,
        engine=segmenter.engine.describe(),
    )


def plot_formats() -> list[str]:
    """File suffixes matplotlib can save a figure as (png, pdf, svg, jpg ...), to check a plot
    path before an evaluation runs rather than after."""
    from matplotlib.backend_bases import FigureCanvasBase

    return sorted(FigureCanvasBase.get_supported_filetypes())


def plot_confusion(result: EvalResult, path: str | Path) -> Path:
    """Save the row-normalised confusion matrix as an image (PNG/SVG/PDF by suffix), atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    matrix = result.confusion.astype(np.float64)
    rows = matrix.sum(1, keepdims=True)
    normalised = np.divide(matrix, rows, out=np.zeros_like(matrix), where=rows > 0)
    n = len(result.classes)
    side = max(4.0, 0.35 * n + 2)
    fig, ax = plt.subplots(figsize=(side, side))
    im = ax.imshow(normalised, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), result.classes, rotation=90, fontsize=8)
    ax.set_yticks(range(n), result.classes, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("label")
    ax.set_title(f"mIoU {result.miou:.3f} ({result.protocol})")
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=path.suffix.lstrip(".") or "png", dpi=120)
    plt.close(fig)
    return path
