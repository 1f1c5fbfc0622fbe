"""Pre- and post-processing as the model card describes them, as plain functions.

Preprocessing resizes (the card's policy), normalises (mean/std, channel order) and pads images
into one batch; postprocessing crops the padding, resizes to the original size and takes the
argmax (no softmax unless probabilities are asked for). The Segmenter, export, quantization
and benchmarks all call these, so every consumer prepares inputs the same way.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from atrous.card import ModelCard
from atrous.config import Preprocessing
from atrous.errors import InputError
from atrous.runtimes import Engine
from atrous.upsample import sparse_upsample_argmax, upsample_argmax

__all__ = [
    "MAX_INPUT_PIXELS",
    "Pipeline",
    "PreprocessMeta",
    "image_of",
    "label_stride",
    "output_stride",
    "place_on_canvas",
    "postprocess",
    "predict_masks",
    "preprocess",
    "target_size",
    "upsampled",
]

MAX_INPUT_PIXELS = 1 << 24  # network input (after the card's resize); activations grow with it


@dataclass(frozen=True)
class PreprocessMeta:
    """Geometry of one preprocessed image: original, resized (unpadded) and padded batch size."""

    original: tuple[int, int]
    resized: tuple[int, int]
    padded: tuple[int, int] | None = None


def place_on_canvas(
    canvas: np.ndarray,
    image: np.ndarray,
    border: int,
    fill: np.ndarray,
    channels_first: bool = False,
    reverse_channels: bool = False,
) -> None:
    """Write the H x W x 3 ``image`` into ``canvas`` at (``border``, ``border``) and ``fill``
    (a scalar or one value per channel, in the canvas's channel order) everywhere else,
    touching each pixel once.

    ``channels_first``: the canvas is 3 x H x W (planar), written by one de-interleaving pass
    instead of an interleaved copy plus a transpose. ``reverse_channels``: the image's channels
    land in the canvas in reverse order (RGB pixels for a BGR network).
    """
    h, w = image.shape[:2]
    if not channels_first:
        canvas[:border] = fill
        canvas[border + h :] = fill
        canvas[border : border + h, :border] = fill
        canvas[border : border + h, border + w :] = fill
        canvas[border : border + h, border : border + w] = (
            image[..., ::-1] if reverse_channels else image
        )
        return
    fills = np.broadcast_to(np.asarray(fill, canvas.dtype), (3,))
    planes = [canvas[c, border : border + h, border : border + w] for c in range(3)]
    for c in range(3):
        canvas[c, :border] = fills[c]
        canvas[c, border + h :] = fills[c]
        canvas[c, border : border + h, :border] = fills[c]
        canvas[c, border : border + h, border + w :] = fills[c]
    if reverse_channels:
        planes = planes[::-1]
    if image.dtype == canvas.dtype and image.flags.c_contiguous:
        cv2.split(image, planes)  # writes into the given planes (same size and type)
    else:
        for c, plane in enumerate(planes):
            plane[...] = image[..., c]


def image_of(item: Any) -> np.ndarray:
    """An RGB uint8 image from a dataset sample, a (image, mask) pair or a bare array."""
    image = getattr(item, "image", None)
    if image is None:
        image = item[0] if isinstance(item, tuple | list) else item
    if not isinstance(image, np.ndarray) or image.ndim != 3:
        raise InputError(f"calibration item is not an H x W x 3 image ({type(item).__name__})")
    return image


def target_size(pre: Preprocessing, height: int, width: int, scale: float = 1.0) -> tuple[int, int]:
    """The (unpadded) size an image of ``height`` x ``width`` is resized to under ``pre``.

    ``scale`` multiplies that size (multi-scale evaluation); 1.0 is the card's policy.
    """
    fixed = pre.network_input()
    if pre.resize in ("fixed", "stretch") and fixed is not None:
        th, tw = fixed
    elif pre.resize == "letterbox" and fixed is not None:  # fit inside, aspect ratio kept
        factor = min(fixed[0] / height, fixed[1] / width)
        th, tw = min(fixed[0], round(height * factor)), min(fixed[1], round(width * factor))
    elif pre.resize == "none" or pre.size is None:
        th, tw = height, width
    elif pre.resize == "shorter":  # torchvision's Resize(size): the longer side truncated
        short, long = sorted((height, width))
        th, tw = (pre.size, int(pre.size * long / short))[:: 1 if height <= width else -1]
    else:
        factor = pre.size / max(height, width)
        th, tw = height * factor, width * factor
    return max(1, round(th * scale)), max(1, round(tw * scale))


def _statistics(pre: Preprocessing) -> tuple[np.ndarray, np.ndarray, bool]:
    """Mean and 1/std in pixel units in the image's RGB order (a BGR network's statistics
    reversed: the channels are reversed as they are written into the batch), and whether the
    card takes raw pixels (mean 0, std 1/255: kept uint8, no float pass)."""
    return _pixel_statistics(tuple(pre.mean), tuple(pre.std), pre.channel_order)


@functools.lru_cache(maxsize=64)
def _pixel_statistics(
    mean: tuple[float, ...], std: tuple[float, ...], channel_order: str
) -> tuple[np.ndarray, np.ndarray, bool]:
    """``_statistics`` for one card's numbers, computed once (they cost ~30 us per image, 4%
    of the host's share of a 257 px image on the fast path)."""
    scale = 255.0 * np.asarray(std, dtype=np.float32)
    order = slice(None, None, -1) if channel_order == "BGR" else slice(None)
    pixel_mean = (255.0 * np.asarray(mean, dtype=np.float32))[order].reshape(1, 1, 3)
    inv_std = (1.0 / scale)[order].reshape(1, 1, 3)
    pixel_mean.flags.writeable = inv_std.flags.writeable = False  # shared between calls
    return pixel_mean, inv_std, bool(np.allclose(mean, 0) and np.allclose(scale, 1.0))


def _resized(pre: Preprocessing, image: np.ndarray, scale: float) -> tuple[np.ndarray, tuple]:
    """One RGB uint8 image checked and resized to the card's size (times ``scale``)."""
    if image.ndim != 3 or image.shape[2] != 3:
        raise InputError(f"expected an H x W x 3 RGB image, got shape {image.shape}")
    h, w = image.shape[:2]
    if min(h, w) < 2:
        raise InputError(f"image of {w}x{h} is too small to segment (at least 2x2)")
    th, tw = target_size(pre, h, w, scale)
    if th * tw > MAX_INPUT_PIXELS:
        raise InputError(
            f"image of {w}x{h} would enter the network at {tw}x{th} (resize "
            f"'{pre.resize}'), over the {MAX_INPUT_PIXELS / 1e6:.0f} megapixel limit; "
            "downscale it first"
        )
    if (th, tw) != (h, w):
        interp = cv2.INTER_AREA if th < h else cv2.INTER_LINEAR
        image = cv2.resize(image, (tw, th), interpolation=interp)
    return image, (th, tw)


def preprocess(
    card: ModelCard, images: Sequence[np.ndarray], scale: float = 1.0
) -> tuple[np.ndarray, list[PreprocessMeta]]:
    """Resize (times ``scale``), normalise and pad RGB uint8 images into one batch (float32,
    or uint8 for a card that takes raw pixels) in the card's layout and channel order."""
    pre = card.preprocessing
    mean, inv_std, raw_pixels = _statistics(pre)
    metas, arrays = [], []
    for image in images:
        resized, size = _resized(pre, image, scale)
        if raw_pixels:
            arrays.append(resized)
        else:  # mean/std are in the network's channel order: RGB pixels, reversed stats
            arrays.append((resized.astype(np.float32) - mean) * inv_std)
        metas.append(PreprocessMeta(image.shape[:2], size))
    m = pre.pad_multiple
    ph = -(-max(a.shape[0] for a in arrays) // m) * m
    pw = -(-max(a.shape[1] for a in arrays) // m) * m
    fixed = pre.network_input()
    if fixed is not None and scale == 1.0:  # a fixed input: exactly its size ('fixed': at least)
        ph, pw = (max(ph, fixed[0]), max(pw, fixed[1])) if pre.resize == "fixed" else fixed
    dtype = np.uint8 if raw_pixels else np.float32
    b, fill = pre.border, np.asarray(pre.pad_value, dtype=dtype)
    planar = pre.layout == "NCHW"
    side = (ph + 2 * b, pw + 2 * b)
    shape = (len(arrays), 3, *side) if planar else (len(arrays), *side, 3)
    batch = np.empty(shape, dtype=dtype)
    bgr = pre.channel_order == "BGR"
    for i, a in enumerate(arrays):
        place_on_canvas(batch[i], a, b, fill, channels_first=planar, reverse_channels=bgr)
    return batch, [PreprocessMeta(m_.original, m_.resized, (ph, pw)) for m_ in metas]


def label_stride(card: ModelCard) -> int:
    """Resolution of the label map relative to the input (1 = full) for models whose labels
    or logits come out at reduced resolution (the fast graph's card says)."""
    return card.fast_path.label_stride if card.fast_path is not None else 1


def output_stride(card: ModelCard) -> int:
    """Input pixels per cell of the network's logits: 4 with a V3+ decoder, else the
    backbone's output stride (16 for a card without a model description)."""
    model = card.model
    if model is None:
        return 16
    return 4 if model.decoder else model.output_stride


def upsampled(logits: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Low-resolution logits (C, h, w) resized bilinearly to ``size`` (half-pixel centres)."""
    scores = torch.from_numpy(np.ascontiguousarray(logits, dtype=np.float32))[None]
    return F.interpolate(scores, size=size, mode="bilinear", align_corners=False)[0].numpy()


def finish_labels(labels: np.ndarray, stride: int, meta: PreprocessMeta) -> np.ndarray:
    """A label map at 1/``stride`` of the padded input -> labels at the original size: an
    exact integer repeat, the padding cropped (or a short map completed by replicating its
    last row and column), then a nearest resize if the card resized."""
    rh, rw = meta.resized
    oh, ow = meta.original
    if stride > 1:
        labels = cv2.resize(
            labels,
            (labels.shape[1] * stride, labels.shape[0] * stride),
            interpolation=cv2.INTER_NEAREST,
        )
    short_h, short_w = rh - labels.shape[0], rw - labels.shape[1]
    if short_h > 0 or short_w > 0:  # padding not a multiple of the stride
        labels = cv2.copyMakeBorder(
            labels, 0, max(0, short_h), 0, max(0, short_w), cv2.BORDER_REPLICATE
        )
    labels = labels[:rh, :rw]
    if (rh, rw) != (oh, ow):
        labels = cv2.resize(labels, (ow, oh), interpolation=cv2.INTER_NEAREST_EXACT)
    return np.ascontiguousarray(labels)


def _sparse_labels(
    card: ModelCard, output: np.ndarray, meta: PreprocessMeta, threads: int
) -> np.ndarray:
    """Labels from logits at the network's own resolution (the fast graph with the tail on
    the host): computed at 1/label_stride and enlarged to the resized image in one pass."""
    stride = label_stride(card)
    rh, rw = meta.resized
    assert meta.padded is not None
    size = (meta.padded[0] // stride, meta.padded[1] // stride)
    region = (min(-(-rh // stride), size[0]), min(-(-rw // stride), size[1]))
    shape = (min(rh, region[0] * stride), min(rw, region[1] * stride))
    labels = sparse_upsample_argmax(output, size, region, threads, stride, shape)
    return finish_labels(labels, 1, meta)


def postprocess(
    card: ModelCard,
    output: np.ndarray,
    meta: PreprocessMeta,
    probabilities: bool = False,
    threads: int = 1,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Crop padding, resize to the original size, argmax; optionally softmax probabilities.

    ``threads``: for the sparse upsample of low-resolution logits (the engine's count)."""
    rh, rw = meta.resized
    oh, ow = meta.original
    kind = card.output
    if kind == "labels":
        labels = np.asarray(output, dtype=np.uint8)
        stride = 1
        if meta.padded is not None and output.shape[0] < meta.padded[0]:
            stride = meta.padded[0] // output.shape[0]  # a label map at 1/stride
        return finish_labels(labels, stride, meta), None
    if kind == "logits" and meta.padded is not None and output.shape[-2] < meta.padded[0]:
        if not probabilities:
            return _sparse_labels(card, output, meta, threads), None
        output = upsampled(output, meta.padded)
    if kind == "logits" and not probabilities and (rh, rw) == (oh, ow):
        # no resize: NumPy's argmax over classes is about 2x torch's on a strided crop
        return output[:, :rh, :rw].argmax(0).astype(np.uint8), None
    logits = torch.from_numpy(np.ascontiguousarray(output[:, :rh, :rw]))[None]
    if kind == "logits" and not probabilities:
        return upsample_argmax(logits[0], (oh, ow)), None
    if (rh, rw) != (oh, ow):
        logits = F.interpolate(logits, size=(oh, ow), mode="bilinear", align_corners=False)
    logits = logits[0]
    if kind == "probability":
        prob = logits[0]
        return (prob > 0.5).to(torch.uint8).numpy(), prob.numpy() if probabilities else None
    labels = logits.argmax(0).to(torch.uint8).numpy()
    probs = torch.softmax(logits, 0).numpy() if probabilities else None
    return labels, probs


class Pipeline(NamedTuple):
    """An engine with the card that prepares its inputs: a Segmenter without file I/O (any
    object with ``engine`` and ``card`` attributes, a Segmenter too, serves where one is
    asked for)."""

    engine: Engine
    card: ModelCard


def predict_masks(engine: Engine, card: ModelCard, images: Sequence[np.ndarray]) -> list:
    """Class-id masks at the images' own sizes: preprocess, one engine call, postprocess (what
    ``Segmenter.predict_batch`` does, without decoding or timings)."""
    batch, metas = preprocess(card, images)
    output = engine.run(batch)
    threads = engine.threads or 1
    return [postprocess(card, output[i], m, threads=threads)[0] for i, m in enumerate(metas)]
