"""Datasets, augmentation and ``data check``."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from atrous.config import DataConfig
from atrous.data import build_dataset, open_dataset
from atrous.data.check import check_dataset
from atrous.data.cityscapes import CityscapesSegmentation, label_to_train_id_table
from atrous.data.folder import FolderDataset
from atrous.data.synthetic import SYNTHETIC_CLASSES, SyntheticShapes, _texture
from atrous.data.transforms import Normalize, TransformedDataset, train_transform
from atrous.data.voc import VOCSegmentation
from atrous.errors import InputError


def _save_rgb(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def _save_mask(path, mask, mode="P"):
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(mask, mode="L")
    if mode == "P":
        image = image.convert("P")
        image.putpalette([v for i in range(256) for v in (i, i, i)])
    image.save(path)


@pytest.fixture
def folder(tmp_path, rng):
    root = tmp_path / "shapes"
    for i in range(3):
        _save_rgb(root / "images" / f"a{i}.png", rng.integers(0, 255, (20, 30, 3), np.uint8))
        mask = rng.integers(0, 3, (20, 30)).astype(np.uint8)
        mask[0] = 255
        _save_mask(root / "masks" / f"a{i}.png", mask)
    (root / "classes.yaml").write_text("- background\n- cat\n- dog\n")
    return root


def test_synthetic_is_deterministic_and_needs_shape():
    a = SyntheticShapes("train", length=4, size=64, seed=3)
    b = SyntheticShapes("train", length=4, size=64, seed=3, cache=False)
    for i in range(4):
        np.testing.assert_array_equal(a[i].image, b[i].image)
        np.testing.assert_array_equal(a[i].mask, b[i].mask)
    assert not np.array_equal(a[0].image, SyntheticShapes("val", 1, 64, seed=3)[0].image)
    assert a[0].image.shape == (64, 64, 3) and a[0].image.dtype == np.uint8
    data = SyntheticShapes("train", length=60, size=64)
    # colour does not give the class: every class's mean colour spreads over the same range
    means = {c: [] for c in range(len(SYNTHETIC_CLASSES))}
    for s in data:
        for c in np.unique(s.mask):
            means[int(c)].append(s.image[s.mask == c].mean(0))
    spread = {c: np.std(np.asarray(v), 0).mean() for c, v in means.items()}
    assert all(v > 30 for v in spread.values()), spread
    assert set(means) == set(range(5)) and all(means.values())


def test_synthetic_texture_window_matches_the_full_texture():
    # shapes compute their texture only inside their bounding box: the same pixels, same draws
    for seed in range(12):  # covers all four texture kinds
        full, base = _texture(np.random.default_rng(seed), 40, 56)
        window, base_w = _texture(np.random.default_rng(seed), 40, 56, box=(5, 33, 17, 50))
        np.testing.assert_array_equal(window, full[5:33, 17:50])
        np.testing.assert_array_equal(base, base_w)


def test_synthetic_object_scale_sets_shape_size():
    def foreground(scale):
        data = SyntheticShapes("val", length=20, size=96, object_scale=scale, max_shapes=2)
        return np.mean([(s.mask > 0).mean() for s in data])

    small, large = foreground((0.08, 0.1)), foreground((0.3, 0.35))
    assert large > 3 * small  # radius x3.5: area grows ~10x (less with overlap and clipping)
    with pytest.raises(ValueError, match="object_scale"):
        SyntheticShapes("val", 1, 32, object_scale=(0.3, 0.1))
    syn = build_dataset(
        DataConfig(kind="synthetic", val_size=2, image_size=32, object_scale=(0.1, 0.2)), "val"
    )
    assert syn.object_scale == (0.1, 0.2)


def test_open_dataset_reads_cli_forms(folder, tmp_path):
    assert open_dataset("synthetic", "val").name == "synthetic"
    assert len(open_dataset(str(folder), "train")) == 3
    config = tmp_path / "exp.yaml"
    config.write_text(
        "model: {name: deeplabv3_mnv2_dm05_os16}\ndata: {kind: synthetic, val_size: 3}\n"
    )
    assert len(open_dataset(str(config), "val")) == 3
    with pytest.raises(InputError, match="not found"):
        open_dataset(str(tmp_path / "missing"))


def test_build_dataset_kinds(folder):
    syn = build_dataset(DataConfig(kind="synthetic", val_size=7, image_size=32), "val")
    assert len(syn) == 7 and syn.classes[0] == "background"
    ds = build_dataset(DataConfig(kind="folder", root=str(folder)), "train")
    assert (
        isinstance(ds, FolderDataset)
        and len(ds) == 3
        and ds.classes == ["background", "cat", "dog"]
    )
    sample = ds[1]
    assert sample.name == "a1" and sample.mask[0, 0] == 255 and sample.image.shape == (20, 30, 3)


def test_voc_layout(tmp_path, rng):
    root = tmp_path / "VOCdevkit" / "VOC2012"
    for stem in ("2007_000032", "2007_000039"):
        _save_rgb(root / "JPEGImages" / f"{stem}.jpg", rng.integers(0, 255, (16, 24, 3), np.uint8))
        _save_mask(root / "SegmentationClass" / f"{stem}.png", np.full((16, 24), 15, np.uint8))
    lists = root / "ImageSets" / "Segmentation"
    lists.mkdir(parents=True)
    (lists / "val.txt").write_text("2007_000032\n2007_000039\n2007_000099\n")
    ds = VOCSegmentation(tmp_path, "val")
    assert len(ds) == 2 and len(ds.classes) == 21 and ds.unpaired[0].stem == "2007_000099"
    assert ds[0].mask.max() == 15
    with pytest.raises(InputError, match="SegmentationClassAug"):
        VOCSegmentation(tmp_path, "trainaug")


def test_cityscapes_maps_label_ids_to_train_ids(tmp_path, rng):
    city = "aachen"
    img = tmp_path / "leftImg8bit" / "val" / city / f"{city}_000000_000019_leftImg8bit.png"
    _save_rgb(img, rng.integers(0, 255, (8, 16, 3), np.uint8))
    ids = np.array([[7, 8, 26, 0, 33, 255, 4, 24]] * 8, np.uint8).repeat(2, 1)
    gt = tmp_path / "gtFine" / "val" / city / f"{city}_000000_000019_gtFine_labelIds.png"
    _save_mask(gt, ids, mode="L")
    ds = CityscapesSegmentation(tmp_path, "val")
    expected = label_to_train_id_table()[ids]
    np.testing.assert_array_equal(ds[0].mask, expected)
    assert list(ds[0].mask[0, ::2]) == [0, 1, 13, 255, 18, 255, 255, 11]


def test_augmentation_keeps_mask_ids_and_pads_with_ignore():
    data = SyntheticShapes("train", length=2, size=48)
    from atrous.config import Preprocessing

    wrapped = TransformedDataset(
        data, train_transform(64, (0.5, 0.9)), Normalize(Preprocessing()), seed=1
    )
    x, y = wrapped[0]
    assert x.shape == (3, 64, 64) and y.shape == (64, 64)
    values = set(np.unique(y.numpy()).tolist())
    assert values <= set(range(5)) | {255}  # nearest only: no blended ids
    assert 255 in values  # a 48px image scaled down cannot fill a 64px crop
    x2, y2 = wrapped[0]  # same seed, same epoch: same augmentation
    assert (x == x2).all() and (y == y2).all()
    masks = []
    for epoch in range(1, 4):  # another epoch, another augmentation
        wrapped.set_epoch(epoch)
        masks.append(wrapped[0][1])
    assert any(not torch.equal(m, y) for m in masks)


def test_augmentation_without_scale_or_jitter_is_a_plain_crop():
    # scale (1, 1) and no jitter leave those steps out: each crop is a window of the scene
    sample = SyntheticShapes("train", length=1, size=48)[0]
    transform = train_transform(32, (1.0, 1.0), flip=False, color_jitter=0.0)
    assert [type(t).__name__ for t in transform.transforms] == ["PadIfNeeded", "RandomCrop"]
    out = transform(image=sample.image, mask=sample.mask)
    image, mask = out["image"], out["mask"]
    windows = [
        (y, x)
        for y in range(17)
        for x in range(17)
        if np.array_equal(sample.image[y : y + 32, x : x + 32], image)
    ]
    assert len(windows) == 1
    y, x = windows[0]
    np.testing.assert_array_equal(sample.mask[y : y + 32, x : x + 32], mask)


def test_rotate90_with_flip_draws_all_eight_symmetries_of_image_and_mask():
    sample = SyntheticShapes("train", length=1, size=32)[0]
    transform = train_transform(32, (1.0, 1.0), flip=True, color_jitter=0.0, rotate90=True)
    # the eight symmetries of the square, as (quarter turns, then transposed?)
    symmetries = [(k, t) for k in range(4) for t in (False, True)]

    def apply(a: np.ndarray, k: int, t: bool) -> np.ndarray:
        a = np.rot90(a, k)
        return a.swapaxes(0, 1) if t else a

    seen = []
    for seed in range(200):
        transform.set_random_seed(seed)
        out = transform(image=sample.image, mask=sample.mask)
        found = [s for s in symmetries if np.array_equal(out["image"], apply(sample.image, *s))]
        assert len(found) == 1  # the synthetic scene has no symmetry of its own
        np.testing.assert_array_equal(out["mask"], apply(sample.mask, *found[0]))
        seen.append(found[0])
    counts = [seen.count(s) for s in symmetries]
    assert min(counts) >= 10  # each of the 8 drawn, none favoured (expected 25 each)


def test_check_clean_folder(folder):
    report = check_dataset(folder)
    assert report.ok and report.kind == "folder" and report.samples == 3
    assert sum(report.class_pixels) + report.ignore_pixels == 3 * 20 * 30
    assert report.ignore_pixels == 3 * 30


def test_check_finds_every_problem(folder, rng):
    _save_rgb(folder / "images" / "lonely.png", rng.integers(0, 255, (20, 30, 3), np.uint8))
    _save_mask(folder / "masks" / "orphan.png", np.zeros((20, 30), np.uint8))
    _save_mask(folder / "masks" / "a0.png", np.zeros((10, 30), np.uint8))  # size mismatch
    _save_mask(folder / "masks" / "a1.png", np.full((20, 30), 7, np.uint8))  # id 7 > 3 classes
    colours = rng.integers(0, 255, (20, 30, 3), np.uint8)
    (folder / "masks" / "a2.png").unlink()
    Image.fromarray(colours).save(folder / "masks" / "a2.png")  # an RGB colour mask
    report = check_dataset(folder)
    text = "\n".join(report.problems)
    assert not report.ok and len(report.problems) == 5, text
    assert "lonely.png: has no matching" in text and "orphan.png: has no matching" in text
    assert "a0.png: mask is 30x10, image is 30x20" in text
    assert "a1.png: label values 7 outside the 3 classes" in text
    assert "a2.png: RGB colour mask" in text


def test_check_flags_jpeg_masks_and_skips_misfit_masks_in_the_table(folder):
    import cv2

    mask = np.zeros((20, 30), np.uint8)
    mask[5:15, 5:25] = 2
    (folder / "masks" / "a0.png").unlink()
    cv2.imwrite(str(folder / "masks" / "a0.jpg"), mask, [cv2.IMWRITE_JPEG_QUALITY, 75])
    _save_mask(folder / "masks" / "a1.png", np.zeros((10, 30), np.uint8))  # size mismatch
    report = check_dataset(folder)
    text = "\n".join(report.problems)
    assert "a0.jpg: mask saved as JPEG" in text and "a1.png: mask is 30x10" in text
    assert sum(report.class_pixels) + report.ignore_pixels == 2 * 20 * 30  # a1 not counted


def test_check_unknown_layout(tmp_path):
    with pytest.raises(InputError, match="unknown layout"):
        check_dataset(tmp_path)


def test_data_check_cli(folder):
    from typer.testing import CliRunner

    from atrous.cli import app

    runner = CliRunner()
    ok = runner.invoke(app, ["data", "check", str(folder)])
    assert ok.exit_code == 0, ok.output
    assert "3 pairs checked: ok" in ok.output and "cat" in ok.output
    _save_mask(folder / "masks" / "a1.png", np.full((20, 30), 9, np.uint8))
    bad = runner.invoke(app, ["data", "check", str(folder), "--json"])
    assert bad.exit_code == 1
    import json

    report = json.loads(bad.stdout)
    assert not report["ok"] and "label values 9" in report["problems"][0]


def test_synthetic_means_the_set_the_model_was_trained_on():
    import json

    from atrous.card import card_from_json
    from atrous.models import default_card

    def older_card(data: dict):  # as 'atrous train' recorded it before the typed section
        raw = json.loads(card.to_json())
        raw["provenance"].pop("training_data")
        raw["provenance"]["notes"] = {"config": {"data": data}}
        return card_from_json(raw)

    default = DataConfig(kind="synthetic")
    card = default_card("deeplabv3_mnv2_dm05_os16", num_classes=5)
    assert len(open_dataset("synthetic", "val", card=card)) == default.val_size  # no record
    trained = DataConfig(kind="synthetic", image_size=64, val_size=7, object_scale=(0.2, 0.3))
    card.provenance.training_data = trained
    data = open_dataset("synthetic", "val", card=card)
    assert len(data) == 7 and data[0].image.shape == (64, 64, 3)
    np.testing.assert_array_equal(data[3].mask, build_dataset(trained, "val")[3].mask)
    migrated = older_card(json.loads(trained.model_dump_json()))
    assert migrated.provenance.training_data == trained
    assert len(open_dataset("synthetic", "val", card=migrated)) == 7
    # a model trained on another dataset is scored on the default synthetic set
    for other in (older_card({"kind": "voc", "root": "VOC2012"}), older_card({"kind": "?"})):
        data = open_dataset("synthetic", "val", card=other)
        assert len(data) == default.val_size and data[0].image.shape[0] == default.image_size


def test_check_refuses_an_unknown_kind(folder):
    with pytest.raises(InputError, match="--kind 'bogus'"):
        check_dataset(folder, kind="bogus")
