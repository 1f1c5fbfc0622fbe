"""The user-facing inference path: decode -> preprocess -> engine -> postprocess -> mask.

Preprocessing follows the model card (resize policy, pad to a multiple, mean/std, channel order);
postprocessing crops the padding, resizes to the original size and takes the argmax (no softmax
unless probabilities are asked for).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from atrous import preprocess as _pre
from atrous.card import ModelCard
from atrous.data.io import fast_read_image
from atrous.errors import InputError, ModelError
from atrous.export.cache import cached_export, format_of_engine
from atrous.fastpath import DEFAULT_LABEL_STRIDE, fast_graph_engine
from atrous.fastpath.deploy import open_fastest
from atrous.preprocess import MAX_INPUT_PIXELS, PreprocessMeta, place_on_canvas, upsampled
from atrous.refine import refine_probabilities, refine_radius
from atrous.runtimes import Engine
from atrous.sources import classify, load_engine

__all__ = [
    "Segmenter",
    "Prediction",
    "PreprocessMeta",
    "MAX_INPUT_PIXELS",
    "fast_read_image",
    "fast_segmenter",
    "place_on_canvas",
]


@dataclass
class Prediction:
    """A segmentation: class-id mask at the original size, optional probabilities, timings (ms)."""

    mask: np.ndarray
    timings: dict[str, float] = field(default_factory=dict)
    probabilities: np.ndarray | None = None

    def class_histogram(self, classes: list[str]) -> dict[str, float]:
        """Fraction of pixels per class present, largest first."""
        counts = np.bincount(self.mask.reshape(-1), minlength=len(classes))
        total = max(1, self.mask.size)
        hist = {
            (classes[i] if i < len(classes) else str(i)): c / total
            for i, c in enumerate(counts)
            if c
        }
        return dict(sorted(hist.items(), key=lambda kv: -kv[1]))


class Segmenter:
    """Segments images with any Engine according to a model card.

    Example::

        seg = Segmenter.from_file("model.pt")
        prediction = seg.predict("photo.jpg")
    """

    def __init__(self, engine: Engine, card: ModelCard, path_used: str | None = None) -> None:
        self.engine = engine
        self.card = card
        self._path_used = path_used
        # one line on the path and why it was chosen (``from_file`` on a checkpoint fills it)
        self.path_description = f"engine {path_used}" if path_used else "plain engine"

    @property
    def path_used(self) -> str:
        """The path this Segmenter runs, in short: 'fast-int8' (the verified graph beside a
        checkpoint), 'fast-fp32' (the cached fp32 fast graph), else the engine's name."""
        return self._path_used or self.engine.name

    def at_full_resolution(self) -> Segmenter:
        """This Segmenter with labels at every pixel (label stride 1): a fast graph's card
        computes them at 1/2 by default; scoring wants the full-resolution labels."""
        facts = self.card.fast_path
        if facts is None or facts.label_stride == 1:
            return self
        card = self.card.model_copy(
            update={"fast_path": facts.model_copy(update={"label_stride": 1})}
        )
        full = Segmenter(self.engine, card, self._path_used)
        full.path_description = self.path_description
        return full

    @classmethod
    def from_file(
        cls,
        model: str | Path,
        engine: str = "auto",
        threads: int | None = None,
        zoo_name: str | None = None,
    ) -> Segmenter:
        """Open a checkpoint, exported model or zoo name on the chosen engine.

        A checkpoint on ``engine="auto"`` or ``"fast"`` runs the fastest verified path
        (:func:`atrous.fastpath.deploy.open_fastest`): the fast graph ``atrous train`` wrote
        beside it if its card names this checkpoint and agrees with the float model, else the
        fp32 fast graph (built once, cached), else PyTorch; ``path_used`` and
        ``path_description`` say which. A zoo name on ``engine="fast"`` runs the cached fp32
        fast graph (uint8 pixels in, low-resolution logits out, labels computed on the host,
        see :mod:`atrous.fastpath`). A checkpoint or zoo name asked for on an exported-file engine
        ('onnxruntime', 'openvino', 'litert', 'ncnn') is exported once into ``$ATROUS_CACHE/export``
        (keyed by the checkpoint's content, logits out) and that file is opened.
        """
        is_checkpoint = classify(model).kind == "checkpoint" and zoo_name is None
        if engine in ("auto", "fast") and is_checkpoint:
            fastest = open_fastest(model, threads)
            segmenter = cls(fastest.engine, fastest.card, fastest.name)
            segmenter.path_description = fastest.description
            return segmenter
        if engine == "fast":
            segmenter = cls(*fast_graph_engine(model, threads=threads), "fast-fp32")
            segmenter.path_description = "fp32 fast graph (cached under $ATROUS_CACHE/fast)"
            return segmenter
        fmt = format_of_engine(engine)
        if fmt is not None and classify(model).kind != "exported" and zoo_name is None:
            model = cached_export(model, fmt, threads=threads)
        eng, card = load_engine(model, engine, threads, zoo_name=zoo_name)
        return cls(eng, card)

    # -- preprocessing and postprocessing (atrous.preprocess) ---------------------------------
    def target_size(self, height: int, width: int, scale: float = 1.0) -> tuple[int, int]:
        """The (unpadded) size an image of ``height`` x ``width`` is resized to.

        ``scale`` multiplies that size (multi-scale evaluation); 1.0 is the card's policy.
        """
        return _pre.target_size(self.card.preprocessing, height, width, scale)

    def preprocess(
        self, images: list[np.ndarray], scale: float = 1.0
    ) -> tuple[np.ndarray, list[PreprocessMeta]]:
        """Resize (times ``scale``), normalise and pad RGB uint8 images into one batch."""
        return _pre.preprocess(self.card, images, scale)

    def postprocess(
        self, output: np.ndarray, meta: PreprocessMeta, probabilities: bool = False
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Crop padding, resize to the original size, argmax; optionally softmax probabilities."""
        return _pre.postprocess(self.card, output, meta, probabilities, self.engine.threads or 1)

    @property
    def label_stride(self) -> int:
        """Resolution of the label map relative to the input (1 = full), from the card."""
        return _pre.label_stride(self.card)

    def logits(self, image: np.ndarray, scale: float = 1.0, flip: bool = False) -> np.ndarray:
        """Class scores (C, H, W) at the image's original size; for multi-scale and flip testing.

        ``flip`` runs the mirrored image and mirrors the scores back.
        """
        if self.card.output != "logits":
            raise ModelError(f"{self.card.name}: outputs {self.card.output}, not logits")
        source = np.ascontiguousarray(image[:, ::-1]) if flip else image
        batch, metas = self.preprocess([source], scale)
        (rh, rw), (oh, ow) = metas[0].resized, metas[0].original
        output = self.engine.run(batch)[0]
        if metas[0].padded is not None and output.shape[-2] < metas[0].padded[0]:
            output = upsampled(output, metas[0].padded)  # logits at the network's resolution
        output = output[:, :rh, :rw]
        scores = torch.from_numpy(np.ascontiguousarray(output))[None]
        scores = F.interpolate(scores, size=(oh, ow), mode="bilinear", align_corners=False)[0]
        return (scores.flip(-1) if flip else scores).numpy()

    @property
    def output_stride(self) -> int:
        """Input pixels per cell of the network's logits: 4 with a V3+ decoder, else the
        backbone's output stride (16 for a card without a model description)."""
        return _pre.output_stride(self.card)

    def refine(self, image: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
        """Probabilities (C, H, W) at the image's size snapped to its edges by a guided filter
        reaching two of this network's output cells each way (:mod:`atrous.refine`); the cell
        size is measured along the axis the card's resize shrinks most."""
        h, w = image.shape[:2]
        th, tw = self.target_size(h, w)
        radius = refine_radius(self.output_stride, min(th / h, tw / w))
        return refine_probabilities(image, probabilities, radius)

    def probabilities(
        self,
        image: np.ndarray,
        scales: Sequence[float] = (1.0,),
        flip: bool = False,
        refine: bool = False,
    ) -> np.ndarray:
        """Softmax probabilities (C, H, W) at the image's size, averaged over input ``scales``
        and (``flip``) their mirrored runs; ``refine`` snaps them to the image's edges
        (:meth:`refine`; the window is sized for scale 1, the card's own input size)."""
        if self.card.output != "logits":
            raise ModelError(
                f"{self.card.name}: outputs {self.card.output}; probabilities (and refinement) "
                "need a model that outputs logits"
            )
        views = [(s, m) for s in scales for m in ((False, True) if flip else (False,))]
        if not views:
            raise InputError("probabilities need at least one scale")
        total = 0.0
        for scale, mirrored in views:
            logits = self.logits(image, scale, mirrored)
            prob = np.exp(logits - logits.max(0, keepdims=True))
            total = total + prob / prob.sum(0, keepdims=True)
        total /= len(views)
        return self.refine(image, total) if refine else total

    # -- the whole path ------------------------------------------------------------------------
    def predict_batch(
        self, images: list[np.ndarray | str | Path], probabilities: bool = False
    ) -> list[Prediction]:
        """Segment several images (arrays or paths) in one engine call."""
        t0 = time.perf_counter()
        arrays = [fast_read_image(im) if isinstance(im, str | Path) else im for im in images]
        t1 = time.perf_counter()
        batch, metas = self.preprocess(arrays)
        t2 = time.perf_counter()
        output = self.engine.run(batch)
        t3 = time.perf_counter()
        results = []
        for i, meta in enumerate(metas):
            mask, probs = self.postprocess(output[i], meta, probabilities)
            results.append(Prediction(mask=mask, probabilities=probs))
        t4 = time.perf_counter()
        n = len(images)
        timings = {
            "decode_ms": (t1 - t0) * 1e3 / n,
            "preprocess_ms": (t2 - t1) * 1e3 / n,
            "infer_ms": (t3 - t2) * 1e3 / n,
            "postprocess_ms": (t4 - t3) * 1e3 / n,
        }
        timings["total_ms"] = sum(timings.values())
        for r in results:
            r.timings = dict(timings)
        return results

    def predict(
        self, image: np.ndarray | str | Path, probabilities: bool = False, refine: bool = False
    ) -> Prediction:
        """Segment one image (an RGB uint8 array or a file path); ``refine`` snaps the
        boundaries to the image's edges (see :meth:`probabilities`)."""
        if not refine:
            return self.predict_batch([image], probabilities)[0]
        t0 = time.perf_counter()
        array = fast_read_image(image) if isinstance(image, str | Path) else image
        t1 = time.perf_counter()
        probs = self.probabilities(array)
        t2 = time.perf_counter()
        probs = self.refine(array, probs)
        mask = probs.argmax(0).astype(np.uint8)
        t3 = time.perf_counter()
        timings = {
            "decode_ms": (t1 - t0) * 1e3,
            "infer_ms": (t2 - t1) * 1e3,  # preprocess, network, upsampling and softmax
            "refine_ms": (t3 - t2) * 1e3,
        }
        timings["total_ms"] = sum(timings.values())
        return Prediction(mask, timings, probs if probabilities else None)


def fast_segmenter(
    model: str | Path | tuple[nn.Module, ModelCard],
    *,
    threads: int | None = None,
    label_stride: int = DEFAULT_LABEL_STRIDE,
    cache_dir: str | Path | None = None,
) -> Segmenter:
    """A Segmenter on the fast graph of a checkpoint, zoo name or (model, card) pair.

    The graph is exported once into ``cache_dir`` (default ``$ATROUS_CACHE/fast``, i.e.
    ``~/.cache/atrous/fast``), keyed by the weights, card and label stride (see
    :func:`atrous.fastpath.fast_graph_engine`).
    """
    engine, card = fast_graph_engine(
        model, threads=threads, label_stride=label_stride, cache_dir=cache_dir
    )
    return Segmenter(engine, card)
