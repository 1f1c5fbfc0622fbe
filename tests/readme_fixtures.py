"""The files README.md's snippets name, built small: a sandbox folder the README runs in.

``build_sandbox(root)`` writes a tiny but really trained demo checkpoint (``demo/best.pt``), its
copy ``model.pt`` and ONNX export ``model.onnx``, a plain state_dict ``weights.pth``, synthetic
scenes as ``photo.jpg`` and ``photos/``, a short ``clip.mp4``, a tiny VOC layout under
``VOCdevkit/VOC2012``, a folder dataset ``data/`` in the demo's classes (what ``--calib data/``
reads) and two foreign ``.tflite`` files.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import torch
import yaml
from PIL import Image

from atrous.data.synthetic import SYNTHETIC_CLASSES, SyntheticShapes
from atrous.demo import demo_config
from atrous.export import export_model
from atrous.models import get_model
from atrous.train import train
from foreign_models import tflite_model

__all__ = ["TINY_DEMO", "build_sandbox"]

# the demo recipe shrunk to seconds: 64-pixel scenes, 16 training images, one epoch
TINY_DEMO = [
    "model.input_size=64",
    "data.image_size=64",
    "data.crop_size=64",
    "data.train_size=16",
    "data.val_size=8",
    "train.epochs=1",
    "train.batch_size=8",
    "train.threads=2",
    "train.tensorboard=false",
    "train.fast_graph=none",
    "train.max_minutes=null",
]


def _scenes(split: str, count: int, size: int, seed: int = 5) -> SyntheticShapes:
    return SyntheticShapes(split, length=count, size=size, seed=seed)


def _save_mask(path: Path, mask: np.ndarray) -> None:
    """A palette PNG of class ids (grey palette, so ids are the pixel values)."""
    image = Image.fromarray(mask.astype(np.uint8), mode="L").convert("P")
    image.putpalette([v for i in range(256) for v in (i, i, i)])
    image.save(path)


def _write_voc(root: Path) -> None:
    """A VOC 2012 layout (``root``/VOCdevkit/VOC2012) with 4 train and 4 val scenes."""
    voc = root / "VOCdevkit" / "VOC2012"
    lists = voc / "ImageSets" / "Segmentation"
    for folder in (voc / "JPEGImages", voc / "SegmentationClass", lists):
        folder.mkdir(parents=True, exist_ok=True)
    for split in ("train", "val"):
        stems = [f"2007_{split}{i:02d}" for i in range(4)]
        for stem, sample in zip(stems, _scenes(split, 4, 64), strict=True):
            Image.fromarray(sample.image).save(voc / "JPEGImages" / f"{stem}.jpg", quality=95)
            _save_mask(voc / "SegmentationClass" / f"{stem}.png", sample.mask)
        (lists / f"{split}.txt").write_text("\n".join(stems) + "\n")


def _write_folder(root: Path) -> None:
    """A folder dataset (images/, masks/, classes.yaml) of 8 scenes in the demo's classes."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i, sample in enumerate(_scenes("train", 8, 64, seed=7)):
        Image.fromarray(sample.image).save(root / "images" / f"scene{i}.png")
        _save_mask(root / "masks" / f"scene{i}.png", sample.mask)
    (root / "classes.yaml").write_text(yaml.safe_dump(list(SYNTHETIC_CLASSES)))


def _write_clip(path: Path, frames: int = 6, size: tuple[int, int] = (96, 64)) -> None:
    """A short mp4v video of synthetic scenes (OpenCV writes BGR)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, size)
    for sample in _scenes("val", frames, max(size)):
        frame = cv2.resize(sample.image, size)
        writer.write(np.ascontiguousarray(frame[:, :, ::-1]))
    writer.release()
    assert path.stat().st_size > 0, "OpenCV wrote no video"


def build_sandbox(root: Path) -> Path:
    """Write every file the README names into ``root`` (the working folder its lines run in)."""
    result = train(demo_config(root / "demo", TINY_DEMO), progress=False)
    assert result.best_checkpoint == root / "demo" / "best.pt"
    shutil.copy(result.best_checkpoint, root / "model.pt")
    export_model(root / "model.pt", "onnx", root / "model.onnx", threads=2)
    model = get_model("deeplabv3_mnv2_dm05_os16", num_classes=21)
    torch.save(model.state_dict(), root / "weights.pth")
    scenes = _scenes("val", 3, 160, seed=11)
    Image.fromarray(scenes[0].image).save(root / "photo.jpg", quality=92)
    (root / "photos").mkdir()
    for i in (1, 2):
        Image.fromarray(scenes[i].image).save(root / "photos" / f"scene{i}.jpg", quality=92)
    _write_clip(root / "clip.mp4")
    _write_voc(root)
    _write_folder(root / "data")
    tflite_model(root / "deeplab.tflite", size=33, channels=21)
    tflite_model(root / "person.tflite", size=17, channels=1, sigmoid=True, seed=3)
    return root
