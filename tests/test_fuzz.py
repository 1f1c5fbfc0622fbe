"""Fuzzing with hypothesis: image decoding, mask loading and config parsing raise only our errors.

Mutated bytes of valid PNG/JPEG/GIF/BMP files, mutated masks, and random YAML structures (random
trees, and the valid experiment with leaves and keys replaced) must either decode/parse or raise
an AtrousError subclass; anything else (ValueError, TypeError, KeyError, ...) is a bug. Runs are
bounded and derandomized, so the suite is fast and deterministic.
"""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

import numpy as np
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from atrous.config import ExperimentConfig, apply_overrides, load_experiment, parse_config
from atrous.data.io import decode_image, read_mask
from atrous.errors import AtrousError, ConfigError

FUZZ = settings(
    max_examples=120,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _encode(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def _seeds() -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8))
    return {
        "png": _encode(rgb, "PNG"),
        "jpeg": _encode(rgb, "JPEG"),
        "gif": _encode(rgb.convert("P"), "GIF"),
        "bmp": _encode(rgb, "BMP"),
        "png16": _encode(
            Image.fromarray((rng.integers(0, 65535, (8, 8))).astype(np.uint16)), "PNG"
        ),
        "rgba": _encode(rgb.convert("RGBA"), "PNG"),
    }


SEEDS = _seeds()
MASK_SEED = _encode(Image.fromarray(np.arange(96, dtype=np.uint8).reshape(8, 12) % 5), "PNG")


@st.composite
def mutated(draw, seeds: dict[str, bytes]) -> bytes:
    """A seed file with random byte flips, a random cut and random inserted bytes."""
    data = bytearray(seeds[draw(st.sampled_from(sorted(seeds)))])
    for _ in range(draw(st.integers(0, 8))):
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    if draw(st.booleans()):
        at = draw(st.integers(0, len(data)))
        data[at:at] = draw(st.binary(max_size=16))
    return bytes(data)


@FUZZ
@given(mutated(SEEDS))
def test_decode_image_raises_only_input_errors(data):
    try:
        image = decode_image(data, "fuzz.bin")
    except AtrousError as exc:
        assert "fuzz.bin" in str(exc) and "\n" not in str(exc)
        return
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3


@FUZZ
@given(mutated({"mask": MASK_SEED, "png": SEEDS["png"], "gif": SEEDS["gif"]}))
def test_read_mask_raises_only_input_errors(data):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "mask.png"
        path.write_bytes(data)
        try:
            mask = read_mask(path)
        except AtrousError as exc:
            assert "mask.png" in str(exc) and "\n" not in str(exc)
            return
    assert mask.dtype == np.uint8 and mask.ndim == 2


# -- config parsing ----------------------------------------------------------------------------
VALID = {
    "model": {"name": "deeplabv3_mnv2_dm05_os16", "input_size": 32, "overrides": {}},
    "data": {"kind": "synthetic", "image_size": 32, "crop_size": 32, "scale_range": [0.5, 2.0]},
    "train": {"epochs": 1, "batch_size": 2, "lr": 0.01, "class_weights": None},
    "out_dir": "runs/x",
}

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
)
trees = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(
            st.one_of(st.text(max_size=8), st.integers(), st.booleans()), inner, max_size=4
        ),
    ),
    max_leaves=12,
)


@st.composite
def near_valid(draw) -> dict:
    """The valid experiment with a few leaves or keys replaced by random trees."""
    data = yaml.safe_load(yaml.safe_dump(VALID))
    for _ in range(draw(st.integers(1, 3))):
        section = draw(st.sampled_from(sorted(data)))
        if not isinstance(data[section], dict) or draw(st.integers(0, 5)) == 0:
            data[section] = draw(trees)
            continue
        keys = sorted(data[section], key=str) + ["extra"]
        data[section][draw(st.sampled_from(keys))] = draw(trees)
    return data


def _parse_text(text: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "exp.yaml"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        try:
            load_experiment(path)
        except ConfigError as exc:
            assert "exp.yaml" in str(exc) and "\n" not in str(exc), str(exc)


@FUZZ
@given(st.one_of(trees, near_valid()))
def test_random_yaml_structures_raise_only_config_errors(data):
    _parse_text(yaml.safe_dump(data, allow_unicode=True))


@FUZZ
@given(st.text(alphabet=st.sampled_from(list("ab:{}[]-,'\"&*!|>#%@\n\t 01.")), max_size=60))
def test_random_yaml_text_raises_only_config_errors(text):
    _parse_text(text)


@FUZZ
@given(near_valid(), st.lists(st.text(max_size=20), max_size=3))
def test_overrides_raise_only_config_errors(data, overrides):
    try:
        parse_config(ExperimentConfig, apply_overrides(data, overrides), "exp.yaml")
    except ConfigError as exc:
        assert "\n" not in str(exc)
