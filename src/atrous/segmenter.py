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

import cv2
import numpy as np
import simplejpeg
import torch
import torch.nn.functional as F

from atrous.card import ModelCard
from atrous.data.io import MAX_PIXELS, read_image
from atrous.errors import InputError, ModelError
from atrous.refine import refine_probabilities, refine_radius
from atrous.runtimes import Engine, load_engine
from atrous.upsample import sparse_upsample_argmax, upsample_argmax

__all__ = ["Segmenter", "Prediction", "PreprocessMeta", "MAX_INPUT_PIXELS", "place_on_canvas"]

MAX_INPUT_PIXELS = 1 << 24  # network input (after the card's resize); activations grow with it


@dataclass(frozen=True)
class PreprocessMeta:
    """Geometry of one preprocessed image: original, resized (unpadded) and padded batch size."""

    original: tuple[int, int]
    resized: tuple[int, int]
    padded: tuple[int, int] | None = None


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


_JPEG = {".jpg", ".jpeg", ".jpe"}
_ORIENTATION = 0x0112  # the EXIF tag


def _exif_orientation(data: bytes) -> int:
    """The EXIF orientation of a JPEG (1, upright, when it has none), read from its APP1 segment
    without decoding anything (a tenth of what opening it with Pillow costs); 0 when the
    header cannot be walked, so that the caller takes the general route."""
    at = 2
    while at + 4 <= len(data) and data[at] == 0xFF:
        marker, length = data[at + 1], int.from_bytes(data[at + 2 : at + 4], "big")
        if marker == 0xDA or length < 2:  # start of scan: no EXIF before the pixels
            return 1
        segment = data[at + 4 : at + 2 + length]
        if marker == 0xE1 and segment[:6] == b"Exif\0\0":
            return _tiff_orientation(segment[6:])
        at += 2 + length
    return 0 if at + 4 <= len(data) else 1


def _tiff_orientation(tiff: bytes) -> int:
    """Tag 0x0112 of IFD0 in an EXIF TIFF block (1 when absent, 0 when malformed)."""
    order = {b"II": "little", b"MM": "big"}.get(tiff[:2])
    if order is None or len(tiff) < 8:
        return 0
    ifd = int.from_bytes(tiff[4:8], order)
    if ifd + 2 > len(tiff):
        return 0
    for i in range(int.from_bytes(tiff[ifd : ifd + 2], order)):
        entry = tiff[ifd + 2 + 12 * i : ifd + 14 + 12 * i]
        if len(entry) < 12:
            return 0
        if int.from_bytes(entry[:2], order) == _ORIENTATION:
            return int.from_bytes(entry[8:10], order)
    return 1


def fast_read_image(path: str | Path) -> np.ndarray:
    """RGB uint8 pixels of an image file, EXIF orientation applied.

    Upright JPEGs go through libjpeg-turbo via simplejpeg (the same pixels as OpenCV and Pillow,
    about 1.5x faster than OpenCV's decoder here); other JPEGs through OpenCV; everything else and
    any failure via ``read_image``.
    """
    if Path(path).suffix.lower() in _JPEG:
        try:
            data = Path(path).read_bytes()
        except OSError:
            return read_image(path)  # its one-line error names the file
        if _exif_orientation(data) == 1:
            try:
                width, height, _, _ = simplejpeg.decode_jpeg_header(data)
                if width * height <= MAX_PIXELS:
                    return simplejpeg.decode_jpeg(data, colorspace="RGB")
            except (ValueError, RuntimeError):  # e.g. CMYK or a damaged stream: OpenCV decides
                pass
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR_RGB)
        if image is not None and image.shape[0] * image.shape[1] <= MAX_PIXELS:
            return image
    return read_image(path)


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


def _upsampled(logits: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Low-resolution logits (C, h, w) resized bilinearly to ``size`` (half-pixel centres)."""
    scores = torch.from_numpy(np.ascontiguousarray(logits, dtype=np.float32))[None]
    return F.interpolate(scores, size=size, mode="bilinear", align_corners=False)[0].numpy()


class Segmenter:
    """Segments images with any Engine according to a model card.

    Example::

        seg = Segmenter.from_file("model.pt")
        prediction = seg.predict("photo.jpg")
    """

    def __init__(self, engine: Engine, card: ModelCard) -> None:
        self.engine = engine
        self.card = card
        pre = card.preprocessing
        scale = 255.0 * np.asarray(pre.std, dtype=np.float32)
        # in the image's RGB order: a BGR network's statistics reversed (the channels are
        # reversed as they are written into the batch)
        order = slice(None, None, -1) if pre.channel_order == "BGR" else slice(None)
        self._mean = (255.0 * np.asarray(pre.mean, dtype=np.float32))[order].reshape(1, 1, 3)
        self._inv_std = (1.0 / scale)[order].reshape(1, 1, 3)
        # a card with mean 0 and std 1/255 takes raw pixels: keep them uint8 (no float pass)
        self._raw_pixels = bool(np.allclose(pre.mean, 0) and np.allclose(scale, 1.0))

    @classmethod
    def from_file(
        cls,
        model: str | Path,
        engine: str = "auto",
        threads: int | None = None,
        zoo_name: str | None = None,
    ) -> Segmenter:
        """Open a checkpoint, exported model or zoo name on the chosen engine.

        ``engine="fast"`` builds (once, cached) the fp32 fast ONNX Runtime graph of a checkpoint
        or zoo model: uint8 pixels in, low-resolution logits out, labels computed on the host
        (see :mod:`atrous.fastpath`; the int8 build needs calibration data: ``atrous export
        --fast --calib``).
        """
        if engine == "fast":
            from atrous.fastpath import fast_segmenter

            return fast_segmenter(model, threads=threads)
        eng, card = load_engine(model, engine, threads, zoo_name=zoo_name)
        return cls(eng, card)

    # -- preprocessing -------------------------------------------------------------------------
    def target_size(self, height: int, width: int, scale: float = 1.0) -> tuple[int, int]:
        """The (unpadded) size an image of ``height`` x ``width`` is resized to.

        ``scale`` multiplies that size (multi-scale evaluation); 1.0 is the card's policy.
        """
        pre = self.card.preprocessing
        if pre.resize == "none" or pre.size is None:
            th, tw = height, width
        elif pre.resize == "fixed":
            th, tw = pre.size, pre.size
        else:
            factor = pre.size / max(height, width)
            th, tw = height * factor, width * factor
        return max(1, round(th * scale)), max(1, round(tw * scale))

    def preprocess(
        self, images: list[np.ndarray], scale: float = 1.0
    ) -> tuple[np.ndarray, list[PreprocessMeta]]:
        """Resize (times ``scale``), normalise and pad RGB uint8 images into one float32 batch."""
        pre = self.card.preprocessing
        metas, arrays = [], []
        for image in images:
            if image.ndim != 3 or image.shape[2] != 3:
                raise InputError(f"expected an H x W x 3 RGB image, got shape {image.shape}")
            h, w = image.shape[:2]
            if min(h, w) < 2:
                raise InputError(f"image of {w}x{h} is too small to segment (at least 2x2)")
            th, tw = self.target_size(h, w, scale)
            if th * tw > MAX_INPUT_PIXELS:
                raise InputError(
                    f"image of {w}x{h} would enter the network at {tw}x{th} (resize "
                    f"'{pre.resize}'), over the {MAX_INPUT_PIXELS / 1e6:.0f} megapixel limit; "
                    "downscale it first"
                )
            if (th, tw) != (h, w):
                interp = cv2.INTER_AREA if th < h else cv2.INTER_LINEAR
                image = cv2.resize(image, (tw, th), interpolation=interp)
            if self._raw_pixels:
                arrays.append(image)
            else:  # mean/std are in the network's channel order: RGB pixels, reversed stats
                arrays.append((image.astype(np.float32) - self._mean) * self._inv_std)
            metas.append(PreprocessMeta((h, w), (th, tw)))
        m = pre.pad_multiple
        ph = -(-max(a.shape[0] for a in arrays) // m) * m
        pw = -(-max(a.shape[1] for a in arrays) // m) * m
        if pre.resize == "fixed" and pre.size is not None and scale == 1.0:
            ph, pw = max(ph, pre.size), max(pw, pre.size)
        dtype = np.uint8 if self._raw_pixels else np.float32
        b, fill = pre.border, np.asarray(pre.pad_value, dtype=dtype)
        planar = pre.layout == "NCHW"
        side = (ph + 2 * b, pw + 2 * b)
        shape = (len(arrays), 3, *side) if planar else (len(arrays), *side, 3)
        batch = np.empty(shape, dtype=dtype)
        bgr = pre.channel_order == "BGR"
        for i, a in enumerate(arrays):
            place_on_canvas(batch[i], a, b, fill, channels_first=planar, reverse_channels=bgr)
        metas = [PreprocessMeta(m_.original, m_.resized, (ph, pw)) for m_ in metas]
        return batch, metas

    # -- postprocessing ------------------------------------------------------------------------
    def postprocess(
        self, output: np.ndarray, meta: PreprocessMeta, probabilities: bool = False
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Crop padding, resize to the original size, argmax; optionally softmax probabilities."""
        rh, rw = meta.resized
        oh, ow = meta.original
        kind = self.card.output
        if kind == "labels":
            labels = np.asarray(output, dtype=np.uint8)
            stride = 1
            if meta.padded is not None and output.shape[0] < meta.padded[0]:
                stride = meta.padded[0] // output.shape[0]  # a label map at 1/stride
            return self._finish_labels(labels, stride, meta), None
        if kind == "logits" and meta.padded is not None and output.shape[-2] < meta.padded[0]:
            # logits at the network's own resolution (the fast graph with the tail on the host)
            if not probabilities:
                stride = self.label_stride
                size = (meta.padded[0] // stride, meta.padded[1] // stride)
                region = (min(-(-rh // stride), size[0]), min(-(-rw // stride), size[1]))
                shape = (min(rh, region[0] * stride), min(rw, region[1] * stride))
                labels = sparse_upsample_argmax(
                    output, size, region, self.engine.threads or 1, stride, shape
                )  # the labels at 1/stride, enlarged to the resized image in the same pass
                return self._finish_labels(labels, 1, meta), None
            output = _upsampled(output, meta.padded)
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

    @property
    def label_stride(self) -> int:
        """Resolution of the label map relative to the input (1 = full) for models whose
        labels or logits come out at reduced resolution (the fast graph's card says)."""
        notes = self.card.provenance.notes.get("fast_path", {})
        return int(notes.get("label_stride", 1)) if isinstance(notes, dict) else 1

    @staticmethod
    def _finish_labels(labels: np.ndarray, stride: int, meta: PreprocessMeta) -> np.ndarray:
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
            output = _upsampled(output, metas[0].padded)  # logits at the network's resolution
        output = output[:, :rh, :rw]
        scores = torch.from_numpy(np.ascontiguousarray(output))[None]
        scores = F.interpolate(scores, size=(oh, ow), mode="bilinear", align_corners=False)[0]
        return (scores.flip(-1) if flip else scores).numpy()

    @property
    def output_stride(self) -> int:
        """Input pixels per cell of the network's logits: 4 with a V3+ decoder, else the
        backbone's output stride (16 for a card without a model description)."""
        model = self.card.model
        if model is None:
            return 16
        return 4 if model.decoder else model.output_stride

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
