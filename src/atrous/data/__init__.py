"""Datasets (VOC, Cityscapes, folders, synthetic), augmentation, checks, image I/O, palettes."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from atrous.config import DataConfig, load_experiment
from atrous.data.check import detect_kind
from atrous.data.cityscapes import CityscapesSegmentation
from atrous.data.dataset import IGNORE_INDEX, Sample, SegmentationDataset
from atrous.data.folder import FolderDataset
from atrous.data.synthetic import SyntheticShapes
from atrous.data.voc import VOCSegmentation
from atrous.errors import InputError

if TYPE_CHECKING:
    from atrous.card import ModelCard

__all__ = [
    "Sample",
    "SegmentationDataset",
    "IGNORE_INDEX",
    "build_dataset",
    "open_dataset",
    "synthetic_config",
]


def build_dataset(config: DataConfig, split: str) -> SegmentationDataset:
    """The dataset a DataConfig names, for ``split`` ('train', 'val' or any split the layout has).

    'train' and 'val' resolve to the config's ``train_split`` / ``val_split``.
    """
    name = {"train": config.train_split, "val": config.val_split}.get(split, split)
    if config.kind == "synthetic":
        length = config.train_size if split == "train" else config.val_size
        return SyntheticShapes(
            name if name in ("train", "val", "test") else split,
            length=length,
            size=config.image_size,
            seed=config.seed,
            max_shapes=config.max_shapes,
            noise=config.noise,
            object_scale=config.object_scale,
        )
    if config.kind == "voc":
        return VOCSegmentation(config.root, name)
    if config.kind == "cityscapes":
        return CityscapesSegmentation(config.root, name)
    return FolderDataset(config.root, name)


def synthetic_config(card: ModelCard | None = None) -> DataConfig:
    """The synthetic set ``card``'s model was trained on (``atrous train`` records its config in
    the card), so that 'synthetic' scores a demo model on its own kind of scenes; else the
    default set."""
    trained_on = card.provenance.training_data if card is not None else None
    if trained_on is not None and trained_on.kind == "synthetic":
        return trained_on.model_copy()
    return DataConfig(kind="synthetic")


def open_dataset(
    data: str, split: str = "val", kind: str | None = None, card: ModelCard | None = None
) -> SegmentationDataset:
    """DATA as the CLI takes it: an experiment YAML (its data section), 'synthetic' (the set
    ``card``'s model was trained on, if synthetic), or a dataset folder whose layout (voc,
    cityscapes, folder) is ``kind`` or detected."""
    if data.endswith((".yaml", ".yml")):
        return build_dataset(load_experiment(data).data, split)
    if data == "synthetic":
        return build_dataset(synthetic_config(card), split)
    if not Path(data).exists():
        raise InputError(f"{data}: dataset folder not found")
    return build_dataset(DataConfig(kind=kind or detect_kind(data), root=data), split)  # type: ignore[arg-type]
