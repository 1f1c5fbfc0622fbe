"""Segmenter: decoding, padding/cropping, EXIF, resizing, and the predict CLI."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from atrous.cli import app
from atrous.data.io import decode_image, read_image
from atrous.data.palettes import palette_array, voc_palette
from atrous.errors import InputError
from atrous.runtimes import TorchEngine
from atrous.segmenter import Segmenter


class IdentityEngine:
    """Returns channel 0 of the input as a one-class 'logit' plus its negation: argmax is x<0."""

    name = "identity"
    threads = 1

    def run(self, batch):
        return np.concatenate([batch[:, :1], -batch[:, :1]], axis=1)

    def describe(self):
        return {"engine": self.name}


def _card(resize="none", size=None, mult=8):
    from atrous.models import default_card

    card = default_card("deeplabv3_mnv2_dm05_os16", num_classes=2)
    card.preprocessing = card.preprocessing.model_copy(
        update={
            "resize": resize,
            "size": size,
            "pad_multiple": mult,
            "mean": (0, 0, 0),
            "std": (1, 1, 1),
        }
    )
    return card


@pytest.mark.parametrize("shape", [(37, 53), (40, 48), (2, 2), (101, 7)])
def test_padding_and_cropping_restore_the_exact_size_and_pixels(shape, rng):
    seg = Segmenter(IdentityEngine(), _card(mult=16))
    image = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
    batch, metas = seg.preprocess([image])
    assert batch.shape[2] % 16 == 0 and batch.shape[3] % 16 == 0
    mask = seg.predict(image).mask
    assert mask.shape == shape
    # logits are (x, -x): class 0 wins wherever x >= 0, i.e. everywhere for uint8 input
    assert (mask == 0).all()


def test_longest_side_resize_keeps_aspect_and_returns_original_size(rng):
    seg = Segmenter(IdentityEngine(), _card(resize="longest", size=64))
    image = rng.integers(0, 256, (300, 150, 3), dtype=np.uint8)
    batch, metas = seg.preprocess([image])
    assert metas[0].resized == (64, 32)
    assert batch.shape == (1, 3, 64, 32)
    assert seg.predict(image).mask.shape == (300, 150)


def test_normalisation_follows_the_card(rng):
    from atrous.models import default_card

    card = default_card("deeplabv3_mnv2_dm05_os16")
    card.preprocessing = card.preprocessing.model_copy(update={"resize": "none"})
    seg = Segmenter(IdentityEngine(), card)
    image = np.full((8, 8, 3), 255, np.uint8)
    batch, _ = seg.preprocess([image])
    assert np.allclose(batch[0, :, 0, 0], 1.0)  # TF DeepLab scaling: 255 -> +1


def test_border_and_per_channel_padding_surround_the_image(rng):
    card = _card(mult=8)
    card.preprocessing = card.preprocessing.model_copy(
        update={"layout": "NHWC", "std": (1 / 255,) * 3, "border": 2, "pad_value": (10, 20, 30)}
    )
    seg = Segmenter(IdentityEngine(), card)
    images = [rng.integers(0, 256, (5, 7, 3), dtype=np.uint8), np.zeros((9, 3, 3), np.uint8)]
    batch, metas = seg.preprocess(images)
    assert batch.dtype == np.uint8 and batch.shape == (2, 16 + 4, 8 + 4, 3)
    assert metas[0].padded == (16, 8)  # the geometry the network's output maps back to
    assert (batch[0, 2:7, 2:9] == images[0]).all() and (batch[1, 2:11, 2:5] == 0).all()
    inside = np.zeros(batch.shape[:3], bool)
    inside[0, 2:7, 2:9] = inside[1, 2:11, 2:5] = True
    assert (batch[~inside] == (10, 20, 30)).all()


@pytest.mark.parametrize("order", ["RGB", "BGR"])
@pytest.mark.parametrize("raw", [True, False])
def test_planar_batches_hold_the_interleaved_batch_transposed(rng, order, raw):
    # NCHW batches are written plane by plane, not transposed afterwards; BGR cards get the
    # channels reversed and their statistics in the network's order
    update = {"border": 1, "pad_value": (3, 5, 7), "channel_order": order}
    update |= {"mean": (0, 0, 0), "std": (1 / 255,) * 3} if raw else {"mean": (0.1, 0.5, 0.9)}
    images = [rng.integers(0, 256, (5, 7, 3), dtype=np.uint8) for _ in range(2)]
    images[1][..., 2] = 200  # a blue image: which plane it lands in tells the channel order

    def batch(layout: str) -> np.ndarray:
        card = _card(mult=8)
        card.preprocessing = card.preprocessing.model_copy(update={**update, "layout": layout})
        return Segmenter(IdentityEngine(), card).preprocess(images)[0]

    planar, interleaved = batch("NCHW"), batch("NHWC")
    assert planar.dtype == (np.uint8 if raw else np.float32)
    assert planar.shape == (2, 3, 8 + 2, 8 + 2) and planar.flags.c_contiguous
    np.testing.assert_array_equal(planar, interleaved.transpose(0, 3, 1, 2))
    blue_plane = 0 if order == "BGR" else 2
    scale = 1.0 if raw else 1 / 255  # the card's std: 1/255 raw, 1 otherwise
    shift = 0.0 if raw else (0.9 if order == "RGB" else 0.1)  # that plane's mean
    np.testing.assert_allclose(planar[1, blue_plane, 1:6, 1:8], 200 * scale - shift, rtol=1e-6)


def test_segmenter_matches_torch_forward(tiny_checkpoint, rng):
    path, model, card = tiny_checkpoint
    card.preprocessing = card.preprocessing.model_copy(update={"resize": "none"})
    seg = Segmenter(TorchEngine(model, threads=2), card)
    image = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    x = (image.astype(np.float32) / 127.5 - 1.0).transpose(2, 0, 1)[None]
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).argmax(1)[0].numpy()
    assert np.array_equal(seg.predict(image).mask, expected)


def test_exif_rotated_jpeg_gives_displayed_size(tmp_path):
    image = Image.fromarray(np.zeros((40, 80, 3), np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    path = tmp_path / "rot.jpg"
    image.save(path, exif=exif)
    assert read_image(path).shape == (80, 40, 3)


@pytest.mark.parametrize("mode", ["L", "P", "RGBA", "I;16", "CMYK", "LA"])
def test_all_modes_become_rgb(tmp_path, mode):
    ext = "jpg" if mode == "CMYK" else "png"
    array = np.arange(12 * 10, dtype=np.uint8).reshape(12, 10)
    if mode == "I;16":
        image = Image.fromarray(array.astype(np.uint16) * 256)
    else:
        image = Image.fromarray(array).convert(mode)
    path = tmp_path / f"x.{ext}"
    image.save(path)
    out = read_image(path)
    assert out.shape == (12, 10, 3) and out.dtype == np.uint8


def test_corrupt_and_non_images_raise_input_error(tmp_path):
    good = tmp_path / "good.png"
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(good)
    truncated = tmp_path / "trunc.png"
    truncated.write_bytes(good.read_bytes()[:2000])
    with pytest.raises(InputError, match="trunc.png: corrupt or truncated"):
        read_image(truncated)
    with pytest.raises(InputError, match="not an image"):
        decode_image(b"hello world", "text.jpg")
    with pytest.raises(InputError, match="file not found"):
        read_image(tmp_path / "missing.jpg")


def test_predict_cli_writes_palette_png_of_right_size(tmp_path, tiny_checkpoint):
    path, _, card = tiny_checkpoint
    images = tmp_path / "imgs"
    images.mkdir()
    for i, size in enumerate([(50, 70), (33, 21)]):
        Image.fromarray(np.full((*size, 3), 40 * i, np.uint8)).save(images / f"im{i}.jpg")
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app, ["predict", str(path), str(images), "--out", str(out), "--threads", "2"]
    )
    assert result.exit_code == 0, result.output
    mask = Image.open(out / "im0.png")
    assert mask.mode == "P" and mask.size == (70, 50)
    assert np.array_equal(
        np.asarray(mask.getpalette()[:15]).reshape(5, 3), np.asarray(voc_palette(5))
    )
    assert Image.open(out / "im1.png").size == (21, 33)
    assert (out / "im0_overlay.jpg").exists()
    assert palette_array(card.palette)[255].tolist() == [255, 255, 255]


def test_predict_cli_bad_input_is_one_line_exit_2(tmp_path, tiny_checkpoint):
    import subprocess
    import sys

    path, *_ = tiny_checkpoint
    bad = tmp_path / "bad.jpg"
    bad.write_text("not an image")
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "atrous", "predict", str(path), str(bad), "--out", str(out)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "bad.jpg: not an image" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not list(out.glob("*")) if out.exists() else True
    proc = subprocess.run(
        [sys.executable, "-m", "atrous", "predict", "no_such_model", str(bad)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and "no_such_model" in proc.stderr
