"""Mask-aware augmentation (albumentations) and the normalisation that turns samples into tensors.

Images are resized with linear (or area) interpolation; masks only ever with nearest neighbour,
and padding of masks uses the ignore index so padded pixels never count in the loss.
"""

from __future__ import annotations

import albumentations as A
import cv2
import numpy as np
import torch

from atrous.config import Preprocessing
from atrous.data.dataset import IGNORE_INDEX, Sample

__all__ = ["train_transform", "val_transform", "Normalize", "TransformedDataset"]


def train_transform(
    crop_size: int,
    scale_range: tuple[float, float] = (0.5, 2.0),
    flip: bool = True,
    color_jitter: float = 0.2,
    ignore_index: int = IGNORE_INDEX,
    rotate90: bool = False,
) -> A.Compose:
    """Random scale, crop to ``crop_size`` (padding masks with ignore), h-flip, colour jitter.

    ``rotate90`` adds random quarter turns (with ``flip``: all eight symmetries of the square,
    equally likely), for data without a natural "up" such as the synthetic set or aerial images.
    A ``scale_range`` of (1, 1) or a ``color_jitter`` of 0 leaves that step out altogether.
    """
    lo, hi = scale_range
    steps: list[A.BasicTransform] = []
    if (lo, hi) != (1.0, 1.0):
        steps.append(
            A.RandomScale(
                scale_limit=(lo - 1.0, hi - 1.0),
                interpolation=cv2.INTER_LINEAR,
                mask_interpolation=cv2.INTER_NEAREST,
                p=1.0,
            )
        )
    steps += [_pad_with_ignore(crop_size, ignore_index), A.RandomCrop(crop_size, crop_size)]
    if flip and rotate90:
        steps.append(A.D4(p=1.0))
    elif rotate90:
        steps.append(A.RandomRotate90(p=1.0))
    elif flip:
        steps.append(A.HorizontalFlip(p=0.5))
    if color_jitter > 0:
        j = color_jitter
        steps.append(
            A.ColorJitter(
                brightness=(1 - j, 1 + j),
                contrast=(1 - j, 1 + j),
                saturation=(1 - j, 1 + j),
                hue=(-j / 4, j / 4),
                p=0.8,
            )
        )
    return A.Compose(steps, mask_interpolation=cv2.INTER_NEAREST)


def val_transform(crop_size: int | None, ignore_index: int = IGNORE_INDEX) -> A.Compose:
    """Deterministic: pad (ignore in the mask) and centre-crop to ``crop_size``, or nothing."""
    if crop_size is None:
        return A.Compose([])
    return A.Compose(
        [
            _pad_with_ignore(crop_size, ignore_index),
            A.CenterCrop(crop_size, crop_size),
        ],
        mask_interpolation=cv2.INTER_NEAREST,
    )


class Normalize:
    """RGB uint8 H x W x 3 -> float32 C x H x W tensor with the model card's mean/std/order."""

    def __init__(self, preprocessing: Preprocessing) -> None:
        self.bgr = preprocessing.channel_order == "BGR"
        self.mean = 255.0 * np.asarray(preprocessing.mean, np.float32)
        self.inv_std = 1.0 / (255.0 * np.asarray(preprocessing.std, np.float32))

    def __call__(self, image: np.ndarray) -> torch.Tensor:
        if self.bgr:
            image = image[..., ::-1]
        array = (image.astype(np.float32) - self.mean) * self.inv_std
        return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))


class TransformedDataset(torch.utils.data.Dataset):
    """Wraps a SegmentationDataset: augmentation then normalisation, as (image, mask) tensors.

    With ``seed`` set, sample ``i`` in epoch ``e`` is augmented from seed (seed, e, i), so a
    resumed run sees exactly the augmentations an uninterrupted one would.
    """

    def __init__(
        self, dataset, transform: A.Compose, normalize: Normalize, seed: int | None = None
    ) -> None:
        self.dataset = dataset
        self.transform = transform
        self.normalize = normalize
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation stream of ``epoch``."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        sample: Sample = self.dataset[index]
        if self.seed is not None:
            seq = np.random.SeedSequence((self.seed, self.epoch, index))
            self.transform.set_random_seed(int(seq.generate_state(1)[0]))
        out = self.transform(image=sample.image, mask=sample.mask)
        mask = torch.from_numpy(np.ascontiguousarray(out["mask"], dtype=np.int64))
        return self.normalize(out["image"]), mask


def _pad_with_ignore(crop_size: int, ignore_index: int) -> A.PadIfNeeded:
    """Pad bottom/right to ``crop_size``: black in the image, ``ignore_index`` in the mask."""
    return A.PadIfNeeded(
        min_height=crop_size,
        min_width=crop_size,
        position="top_left",
        border_mode=cv2.BORDER_CONSTANT,
        fill=0,
        fill_mask=ignore_index,
    )
