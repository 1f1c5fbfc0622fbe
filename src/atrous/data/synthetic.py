"""A built-in synthetic dataset: textured, overlapping shapes on textured, cluttered backgrounds.

Every object class draws its colours and textures from the same distribution, so colour says
nothing about the class: a model has to use shape (and the context of occlusion) to label
pixels. Backgrounds are muted (tinted greys) with clutter in object colours, as real scenes
are. Scenes are generated from (seed, split, index), so the set is deterministic and needs no
files.
"""

from __future__ import annotations

import cv2
import numpy as np

from atrous.data.dataset import Sample, SegmentationDataset
from atrous.data.palettes import voc_palette

__all__ = ["SyntheticShapes", "SYNTHETIC_CLASSES"]

SYNTHETIC_CLASSES = ("background", "circle", "triangle", "rectangle", "cross")
_SPLIT_KEYS = {"train": 0, "val": 1, "test": 2}
# shape radius as a fraction of the scene side: shapes span about 1/3 to 3/5 of the scene
DEFAULT_OBJECT_SCALE = (0.16, 0.3)


def _colour(rng: np.random.Generator) -> np.ndarray:
    """A random RGB colour, the same distribution for every object class."""
    return rng.integers(0, 256, size=3).astype(np.float32)


def _muted(rng: np.random.Generator) -> np.ndarray:
    """A low-saturation colour for the background (a tinted grey), as scenes behind objects are."""
    grey = rng.uniform(50, 200)
    return np.clip(grey + rng.normal(0.0, 12.0, 3), 0, 255).astype(np.float32)


def _contrasting_colour(rng: np.random.Generator, avoid: np.ndarray | None) -> np.ndarray:
    """A random colour at least 60 grey levels (RGB distance) from ``avoid``.

    Every class draws from the same distribution, so colour still says nothing about the class;
    the distance only guarantees that an object's outline is visible against what lies beneath.
    """
    colour = _colour(rng)
    for _ in range(20):
        if avoid is None or float(np.linalg.norm(colour - avoid)) >= 60.0:
            break
        colour = _colour(rng)
    return colour


def _texture(
    rng: np.random.Generator,
    h: int,
    w: int,
    avoid: np.ndarray | None = None,
    muted: bool = False,
    box: tuple[int, int, int, int] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """A random H x W x 3 float texture (flat, stripes, checks or 2-colour blotches) and its base.

    The second colour is near the first, so a texture's inner edges are weaker than the edges
    between objects, while any colour can still belong to any class. With ``box`` (y0, y1, x0,
    x1) only that window of the H x W texture is computed: the same pixels, at a fraction of
    the cost for a shape that covers a small part of the scene.
    """
    a = _muted(rng) if muted else _contrasting_colour(rng, avoid)
    b = np.clip(a + rng.normal(0.0, 40.0, 3), 0, 255).astype(np.float32)
    kind = rng.integers(0, 4)
    y0, y1, x0, x1 = box if box is not None else (0, h, 0, w)
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    if kind == 0:
        t = np.zeros(yy.shape, np.float32)
    elif kind == 1:
        angle = rng.uniform(0, np.pi)
        period = rng.uniform(4, 14)
        t = (np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * 2 * np.pi / period) > 0) * 1.0
    elif kind == 2:
        period = int(rng.integers(3, 10))
        t = ((yy.astype(int) // period + xx.astype(int) // period) % 2) * 1.0
    else:
        grid = rng.random((int(rng.integers(3, 8)),) * 2).astype(np.float32)
        t = cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)[y0:y1, x0:x1]
    t = t.astype(np.float32)[..., None]
    return a * (1 - t) + b * t, a


def _shape_mask(
    rng: np.random.Generator,
    kind: int,
    h: int,
    w: int,
    scale: float,
    object_scale: tuple[float, float] = DEFAULT_OBJECT_SCALE,
) -> np.ndarray:
    """A filled binary mask of one shape of class ``kind`` at a random place, size and angle.

    The shape's radius is drawn from ``object_scale`` (fractions of ``scale``, the scene side).
    """
    mask = np.zeros((h, w), np.uint8)
    r = rng.uniform(*object_scale) * scale
    cx, cy = rng.uniform(0.1, 0.9) * w, rng.uniform(0.1, 0.9) * h
    angle = rng.uniform(0, 2 * np.pi)
    if kind == 1:  # circle
        cv2.circle(mask, (int(cx), int(cy)), int(r), 1, -1, lineType=cv2.LINE_8)
        return mask
    if kind == 2:  # triangle
        angles = angle + np.array([0, 2 * np.pi / 3, 4 * np.pi / 3])
        points = np.stack([cx + r * 1.2 * np.cos(angles), cy + r * 1.2 * np.sin(angles)], 1)
    elif kind == 3:  # rectangle, aspect 1:1 to 1:2
        aspect = rng.uniform(0.5, 1.0)
        half = np.array([[-1, -aspect], [1, -aspect], [1, aspect], [-1, aspect]]) * r * 0.95
        points = half @ _rotation(angle).T + (cx, cy)
    else:  # cross (plus sign) with arms a third of its span wide
        t = r / 3
        outline = [(-t, -r), (t, -r), (t, -t), (r, -t), (r, t), (t, t), (t, r), (-t, r)]
        outline += [(-t, t), (-r, t), (-r, -t), (-t, -t)]
        points = np.asarray(outline) @ _rotation(angle).T + (cx, cy)
    cv2.fillPoly(mask, [np.round(points).astype(np.int32)], 1, lineType=cv2.LINE_8)
    return mask


def _rotation(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s], [s, c]])


def _clutter(rng: np.random.Generator, image: np.ndarray, count: int) -> None:
    """Draw thin lines and small dots in random colours; they stay labelled background."""
    h, w = image.shape[:2]
    for _ in range(count):
        colour = tuple(float(c) for c in _colour(rng))
        if rng.random() < 0.6:
            p0 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
            p1 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
            cv2.line(image, p0, p1, colour, int(rng.integers(1, 3)))
        else:
            centre = (int(rng.integers(0, w)), int(rng.integers(0, h)))
            cv2.circle(image, centre, int(rng.integers(1, 3)), colour, -1)


def make_scene(
    rng: np.random.Generator,
    size: int,
    max_shapes: int = 4,
    noise: float = 8.0,
    object_scale: tuple[float, float] = DEFAULT_OBJECT_SCALE,
) -> tuple[np.ndarray, np.ndarray]:
    """One scene: textured background, 2..max_shapes overlapping textured shapes, clutter, noise."""
    h = w = size
    image, background = _texture(rng, h, w, muted=True)
    mask = np.zeros((h, w), np.uint8)
    for _ in range(int(rng.integers(2, max_shapes + 1))):
        kind = int(rng.integers(1, len(SYNTHETIC_CLASSES)))
        region = _shape_mask(rng, kind, h, w, size, object_scale).astype(bool)
        # occlusion is allowed, but a shape that would hide most of an earlier one is redrawn
        for _ in range(5):
            if not region.any() or (mask[region] > 0).mean() <= 0.3:
                break
            region = _shape_mask(rng, kind, h, w, size, object_scale).astype(bool)
        if not region.any():
            continue
        x0, y0, bw, bh = cv2.boundingRect(region.view(np.uint8))
        box = (y0, y0 + bh, x0, x0 + bw)
        texture, _ = _texture(rng, h, w, avoid=background, box=box)
        inside = region[y0 : y0 + bh, x0 : x0 + bw]
        image[y0 : y0 + bh, x0 : x0 + bw][inside] = texture[inside]
        mask[region] = kind
    _clutter(rng, image, int(rng.integers(1, 6)))
    image = cv2.GaussianBlur(image, (3, 3), rng.uniform(0.1, 0.8))
    image += rng.normal(0.0, noise, image.shape).astype(np.float32)
    return np.clip(image + 0.5, 0, 255).astype(np.uint8), mask


class SyntheticShapes(SegmentationDataset):
    """Deterministic synthetic scenes of circles, triangles, rectangles and crosses.

    Args:
        split: 'train', 'val' or 'test' (disjoint streams of the same generator).
        length: number of samples.
        size: image side in pixels (square images).
        seed: base seed; (seed, split, index) fixes each scene.
        max_shapes: up to this many shapes per scene (at least 2).
        noise: standard deviation of the additive Gaussian noise, in grey levels.
        cache: keep generated scenes in memory (generation costs ~5-10 ms a 192 px scene).
        object_scale: (min, max) shape radius as a fraction of ``size``; larger shapes are
            easier at a coarse output stride (fewer boundary pixels per shape).
    """

    name = "synthetic"

    def __init__(
        self,
        split: str = "train",
        length: int = 1000,
        size: int = 128,
        seed: int = 0,
        max_shapes: int = 4,
        noise: float = 8.0,
        cache: bool = True,
        object_scale: tuple[float, float] = DEFAULT_OBJECT_SCALE,
    ) -> None:
        if split not in _SPLIT_KEYS:
            raise ValueError(f"split must be one of {', '.join(_SPLIT_KEYS)}, got {split!r}")
        self.split, self.length, self.size = split, length, size
        self.seed, self.max_shapes, self.noise = seed, max_shapes, noise
        lo, hi = object_scale
        if not 0 < lo <= hi <= 0.5:
            raise ValueError(f"object_scale must satisfy 0 < min <= max <= 0.5, got {object_scale}")
        self.object_scale = (float(lo), float(hi))
        self.classes = list(SYNTHETIC_CLASSES)
        self.palette = voc_palette(len(self.classes))
        self._cache: dict[int, Sample] | None = {} if cache else None

    def __len__(self) -> int:
        return self.length

    def load(self, index: int) -> Sample:
        """Generate scene ``index`` (the same pixels every time)."""
        if self._cache is not None and index in self._cache:
            return self._cache[index]
        rng = np.random.default_rng((self.seed, _SPLIT_KEYS[self.split], index))
        image, mask = make_scene(rng, self.size, self.max_shapes, self.noise, self.object_scale)
        sample = Sample(image=image, mask=mask, name=f"{self.split}_{index:05d}")
        if self._cache is not None:
            self._cache[index] = sample
        return sample
