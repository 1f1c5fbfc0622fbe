"""The bad-input corpus: every entry point answers broken files with one line and a non-zero exit.

The corpus is generated into temporary folders at test time (nothing binary is committed). Each
failing case must raise one of the project's error types (exit code 2 through the CLI), or print
its problem and exit 1 for ``data check``, with a one-line message naming the file; the files that
must work (CMYK, 16-bit, palette, RGBA, EXIF-rotated) are checked against the expected pixels.
A representative subset runs the real CLI as a subprocess to check the formatting end to end.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from typer.testing import CliRunner

from atrous.checkpoint import save_checkpoint
from atrous.cli import app
from atrous.data.io import read_image
from atrous.errors import AtrousError
from atrous.models.zoo import default_card, get_model

CORPUS_SIZE: dict[str, int] = {}  # entry point -> cases, filled as the tables below are built


def _count(entry: str, cases: list) -> list:
    CORPUS_SIZE[entry] = CORPUS_SIZE.get(entry, 0) + len(cases)
    return cases


# -- corpus builders ---------------------------------------------------------------------------
def smooth_image(height: int = 48, width: int = 64, seed: int = 0) -> np.ndarray:
    """A smooth random RGB image (so JPEG round trips stay close)."""
    small = np.random.default_rng(seed).integers(0, 256, (4, 5, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(small).resize((width, height), Image.BILINEAR))


def encode(image: Image.Image | np.ndarray, fmt: str, **kw) -> bytes:
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kw)
    return buffer.getvalue()


def corrupt_png() -> bytes:
    data = bytearray(encode(smooth_image(), "PNG"))
    start = data.index(b"IDAT") + 8
    data[start : start + 16] = bytes(16)  # breaks the zlib stream and the CRC
    return bytes(data)


def corrupt_jpeg() -> bytes:
    data = bytearray(encode(smooth_image(), "JPEG"))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = b"\x00\x00\x00\x00"  # zero height and width in the frame header
    return bytes(data)


def big_png(width: int, height: int) -> bytes:
    """A large but highly compressible (uniform) PNG, cheap to write."""
    return encode(Image.new("RGB", (width, height), (90, 140, 200)), "PNG", compress_level=1)


BAD_IMAGES = {
    "truncated.jpg": lambda: encode(smooth_image(), "JPEG")[:300],
    "truncated.png": lambda: encode(smooth_image(), "PNG")[:200],
    "corrupt.png": corrupt_png,
    "corrupt.jpg": corrupt_jpeg,
    "text.jpg": lambda: b"this is not an image\n" * 10,
    "empty.png": lambda: b"",
    "tiny.png": lambda: encode(Image.new("RGB", (1, 1)), "PNG"),
    "huge.png": lambda: big_png(9000, 7000),  # 63 MP: over MAX_PIXELS
}
BAD_IMAGE_MESSAGES = {
    "truncated.jpg": "truncated",
    "truncated.png": "truncated",
    "corrupt.png": "corrupt",
    "corrupt.jpg": "corrupt",
    "text.jpg": "not an image",
    "empty.png": "not an image",
    "tiny.png": "too small",
    "huge.png": "megapixel limit",
}


# -- helpers -----------------------------------------------------------------------------------
def expect_error(args: list[str], needle: str, *, names: str | None = None) -> str:
    """Run the CLI in-process; it must fail with one line containing ``needle`` (and ``names``)."""
    result = CliRunner().invoke(app, [str(a) for a in args])
    exc = result.exception
    if isinstance(exc, AtrousError):
        message = str(exc)
    else:
        assert isinstance(exc, SystemExit) and exc.code not in (0, None), (
            f"expected a failure, got exit {result.exit_code}: {result.output}\n{exc!r}"
        )
        message = result.output.strip().splitlines()[-1] if result.output.strip() else ""
        assert exc.code == 1 or result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert "\n" not in message, message
    assert needle in message, message
    if names is not None:
        assert names in message, message
    return message


def run_cli(*args, env_extra: dict | None = None, timeout: float = 120):
    """The real command line in a subprocess (sources from this worktree)."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src"), "COLUMNS": "80"}
    env.update(env_extra or {})
    env.pop("ATROUS_DEBUG", None)
    return subprocess.run(
        [sys.executable, "-m", "atrous", *[str(a) for a in args]],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )


def assert_one_line_failure(proc, needle: str) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert needle in lines[0], lines[0]
    assert "Traceback" not in proc.stderr + proc.stdout


def assert_clean_folder(folder: Path) -> None:
    """No temporary or partial files: every PNG/JPEG opens fully, every .pt loads."""
    if not folder.exists():
        return
    for path in folder.rglob("*"):
        assert ".tmp" not in path.name and not path.name.startswith("."), path
        if path.suffix in (".png", ".jpg"):
            read_image(path)
        if path.suffix == ".pt":
            from atrous.checkpoint import read_checkpoint

            read_checkpoint(path)


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    """A 5-class dm0.5 checkpoint at a 64-pixel input (fast)."""
    card = default_card("deeplabv3_mnv2_dm05_os16", num_classes=5)
    card = card.model_copy(
        update={"preprocessing": card.preprocessing.model_copy(update={"size": 64})}
    )
    torch.manual_seed(0)
    net = get_model("deeplabv3_mnv2_dm05_os16", num_classes=5).eval()
    return save_checkpoint(tmp_path_factory.mktemp("model") / "model.pt", net, card)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("corpus")
    for name, make in BAD_IMAGES.items():
        (folder / name).write_bytes(make())
    return folder


# -- predict: broken images ---------------------------------------------------------------------
@pytest.mark.parametrize("name", _count("predict", sorted(BAD_IMAGES)))
def test_predict_refuses_broken_image_in_one_line(model, corpus, tmp_path, name):
    out = tmp_path / "out"
    expect_error(
        ["predict", model, corpus / name, "--out", out, "--threads", "2"],
        BAD_IMAGE_MESSAGES[name],
        names=name,
    )
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.parametrize(
    "name",
    [  # each starts a real process (~10 s): one in the default suite, the rest with -m slow
        n if n == "truncated.jpg" else pytest.param(n, marks=pytest.mark.slow)
        for n in _count("predict (subprocess)", ["truncated.jpg", "text.jpg", "huge.png"])
    ],
)
def test_real_cli_prints_one_error_line_and_exits_2(model, corpus, tmp_path, name):
    proc = run_cli("predict", model, corpus / name, "--out", tmp_path / "out", "--threads", "2")
    assert_one_line_failure(proc, BAD_IMAGE_MESSAGES[name])
    assert name in proc.stderr


def test_predict_folder_with_one_bad_file_leaves_no_partial_output(model, corpus, tmp_path):
    _count("predict", [1])
    folder = tmp_path / "mixed"
    folder.mkdir()
    Image.fromarray(smooth_image()).save(folder / "a_good.png")
    (folder / "b_bad.jpg").write_bytes(BAD_IMAGES["truncated.jpg"]())
    out = tmp_path / "out"
    expect_error(["predict", model, folder, "--out", out, "--threads", "2"], "b_bad.jpg")
    assert sorted(p.name for p in out.iterdir()) == ["a_good.png", "a_good_overlay.jpg"]
    assert_clean_folder(out)


@pytest.mark.parametrize(
    "args, needle",
    _count(
        "predict",
        [
            (["missing.png"], "missing.png: file not found"),
            (["nothing-*.png"], "pattern matches no files"),
            (["EMPTY"], "no images found"),
        ],
    ),
)
def test_predict_missing_inputs(model, tmp_path, args, needle):
    (tmp_path / "EMPTY").mkdir()
    args = [str(tmp_path / a) for a in args]
    expect_error(["predict", model, *args, "--out", tmp_path / "out"], needle)


# -- predict: unusual but valid images ----------------------------------------------------------
def _cmyk_jpeg(image: np.ndarray) -> tuple[bytes, np.ndarray]:
    data = encode(Image.fromarray(image).convert("CMYK"), "JPEG", quality=95)
    return data, np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def _exif_rotated(image: np.ndarray) -> tuple[bytes, np.ndarray]:
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 clockwise to display
    data = encode(image, "PNG", exif=exif)
    return data, np.rot90(image, k=-1)


def _sixteen_bit(image: np.ndarray) -> tuple[bytes, np.ndarray]:
    gray = (image[..., 0].astype(np.uint16) * 257).astype(np.uint16)
    data = encode(Image.fromarray(gray), "PNG")  # mode I;16
    return data, np.repeat(image[..., :1], 3, axis=2)


def _palette(image: np.ndarray) -> tuple[bytes, np.ndarray]:
    indexed = Image.fromarray(image).quantize(colors=32)
    return encode(indexed, "PNG"), np.asarray(indexed.convert("RGB"))


def _rgba(image: np.ndarray) -> tuple[bytes, np.ndarray]:
    alpha = np.full(image.shape[:2] + (1,), 255, dtype=np.uint8)
    alpha[:, : image.shape[1] // 2] = 0  # left half transparent -> black
    want = image.copy()
    want[:, : image.shape[1] // 2] = 0
    return encode(np.concatenate([image, alpha], axis=2), "PNG"), want


VALID_ODDITIES = _count(
    "predict (valid oddities)",
    [
        ("cmyk.jpg", _cmyk_jpeg),
        ("exif.png", _exif_rotated),
        ("sixteen.png", _sixteen_bit),
        ("palette.png", _palette),
        ("rgba.png", _rgba),
    ],
)


@pytest.mark.parametrize("name, make", VALID_ODDITIES)
def test_unusual_images_decode_to_the_right_rgb_and_predict(model, tmp_path, name, make):
    from atrous.segmenter import Segmenter

    data, want = make(smooth_image(48, 64))
    path = tmp_path / name
    path.write_bytes(data)
    got = read_image(path)
    assert got.dtype == np.uint8 and got.shape == want.shape
    assert np.abs(got.astype(int) - want.astype(int)).max() <= 1
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["predict", str(model), str(path), "--out", str(out)])
    assert result.exit_code == 0, result.output
    mask = np.asarray(Image.open(out / f"{path.stem}.png"))
    reference = Segmenter.from_file(model, threads=2).predict(want).mask
    assert mask.shape == want.shape[:2]
    assert (mask == reference).mean() > 0.99
    assert_clean_folder(out)


# -- models: checkpoints and exported files -----------------------------------------------------
@pytest.fixture(scope="module")
def bad_models(tmp_path_factory, model) -> Path:
    folder = tmp_path_factory.mktemp("models")
    data = model.read_bytes()
    (folder / "truncated.pt").write_bytes(data[: len(data) // 2])
    (folder / "text.pt").write_text("not a checkpoint\n")
    (folder / "empty.pt").write_bytes(b"")
    other = get_model("deeplabv3_mnv2_os16", num_classes=5).eval()  # width 1.0, not 0.5
    card = default_card("deeplabv3_mnv2_dm05_os16", num_classes=5)
    save_checkpoint(folder / "other_arch.pt", other, card)
    torch.save({"weights": [1, 2, 3]}, folder / "foreign.pt")
    torch.save(get_model("deeplabv3_mnv2_dm05_os16", num_classes=5).state_dict(), folder / "sd.pt")
    classifier = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten()
    ).eval()
    torch.onnx.export(
        classifier, torch.zeros(1, 3, 32, 32), folder / "classifier.onnx", dynamo=False
    )
    (folder / "garbage.onnx").write_bytes(os.urandom(256))
    return folder


BAD_MODELS = [
    ("truncated.pt", "truncated.pt"),
    ("text.pt", "text.pt"),
    ("empty.pt", "empty.pt"),
    ("other_arch.pt", "do not fit"),
    ("foreign.pt", "foreign.pt"),
    ("sd.pt", "without a model card"),
    ("classifier.onnx", "classifier.onnx"),
    ("garbage.onnx", "garbage.onnx"),
]


@pytest.mark.parametrize("name, needle", _count("predict (models)", BAD_MODELS))
def test_predict_refuses_broken_models(bad_models, tmp_path, name, needle):
    image = tmp_path / "photo.png"
    Image.fromarray(smooth_image()).save(image)
    out = tmp_path / "out"
    expect_error(["predict", bad_models / name, image, "--out", out], needle, names=name)
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.parametrize(
    "name", _count("inspect", ["truncated.pt", "other_arch.pt", "classifier.onnx"])
)
def test_inspect_refuses_broken_models(bad_models, name):
    expect_error(["inspect", bad_models / name], name)


def test_unknown_zoo_name(tmp_path):
    _count("predict (models)", [1])
    image = tmp_path / "photo.png"
    Image.fromarray(smooth_image()).save(image)
    expect_error(["predict", "deeplabv3_nonexistent", image], "deeplabv3_nonexistent")


def test_real_cli_refuses_truncated_checkpoint(bad_models, tmp_path):
    _count("predict (subprocess)", [1])
    image = tmp_path / "photo.png"
    Image.fromarray(smooth_image()).save(image)
    proc = run_cli("predict", bad_models / "truncated.pt", image, "--out", tmp_path / "out")
    assert_one_line_failure(proc, "truncated.pt")


# -- export ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name", _count("export", ["truncated.pt", "other_arch.pt", "classifier.onnx", "text.pt"])
)
def test_export_refuses_broken_checkpoints_and_writes_nothing(bad_models, tmp_path, name):
    out = tmp_path / "exported" / "model.onnx"
    expect_error(["export", bad_models / name, "--out", out], name)
    assert not out.exists()
    assert_clean_folder(tmp_path / "exported")


def test_export_unknown_format(model, tmp_path):
    _count("export", [1])
    expect_error(["export", model, "--format", "caffe", "--out", tmp_path / "m.x"], "caffe")
    assert not (tmp_path / "m.x").exists()


# -- config loading and train ------------------------------------------------------------------
TINY_EXPERIMENT = {
    "model": {"name": "deeplabv3_mnv2_dm05_os16", "input_size": 32},
    "data": {
        "kind": "synthetic",
        "image_size": 32,
        "crop_size": 32,
        "train_size": 8,
        "val_size": 4,
    },
    "train": {
        "epochs": 1,
        "batch_size": 4,
        "tensorboard": False,
        "threads": 2,
        "fast_graph": "none",
    },
}

BAD_CONFIGS = [
    ("malformed.yaml", "model: [unclosed\n  name: x\n", "malformed YAML"),
    ("tabs.yaml", "model:\n\tname: x\n", "malformed YAML"),
    ("list.yaml", "- a\n- b\n", "expected a mapping"),
    ("binary.yaml", "\udcff", "not a text file"),
    ("empty.yaml", "", "missing required key 'model'"),
    ("unknown.yaml", {**TINY_EXPERIMENT, "trian": {}}, "unknown key 'trian'"),
    ("newline_key.yaml", {**TINY_EXPERIMENT, "tr\nain": {}}, "unknown key 'tr\\nain'"),
    (
        "mistyped.yaml",
        {**TINY_EXPERIMENT, "train": {**TINY_EXPERIMENT["train"], "epochs": "many"}},
        "key 'train.epochs'",
    ),
    (
        "nested_unknown.yaml",
        {**TINY_EXPERIMENT, "data": {**TINY_EXPERIMENT["data"], "crop": 32}},
        "unknown key 'data.crop'",
    ),
    (
        "bad_model.yaml",
        {**TINY_EXPERIMENT, "model": {"name": "deeplabv3_nonexistent"}},
        "deeplabv3_nonexistent",
    ),
    (
        "bad_override.yaml",
        {**TINY_EXPERIMENT, "model": {**TINY_EXPERIMENT["model"], "overrides": {"depth": 3}}},
        "depth",
    ),
    (
        "wrong_type_section.yaml",
        {**TINY_EXPERIMENT, "train": [1, 2]},
        "key 'train'",
    ),
    (
        "missing_root.yaml",
        {**TINY_EXPERIMENT, "data": {"kind": "folder", "root": "/nonexistent/dataset"}},
        "/nonexistent/dataset",
    ),
]


def _write_config(folder: Path, name: str, content) -> Path:
    path = folder / name
    if isinstance(content, dict):
        path.write_text(yaml.safe_dump(content))
    elif name == "binary.yaml":
        path.write_bytes(b"\xff\xfe\x00model")
    else:
        path.write_text(content)
    return path


@pytest.mark.parametrize("name, content, needle", _count("train (config)", BAD_CONFIGS))
def test_train_refuses_bad_configs_in_one_line(tmp_path, name, content, needle):
    path = _write_config(tmp_path, name, content)
    out = tmp_path / "run"
    names = None if name == "missing_root.yaml" else name  # names the dataset folder instead
    expect_error(["train", path, "--out", out], needle, names=names)
    assert_clean_folder(out)
    assert not (out / "last.pt").exists()


@pytest.mark.parametrize(
    "overrides, needle",
    _count(
        "train (config)",
        [(["train.lr"], "expected key=value"), (["train.epochs.x=1"], "not a section")],
    ),
)
def test_train_refuses_bad_overrides(tmp_path, overrides, needle):
    path = _write_config(tmp_path, "ok.yaml", TINY_EXPERIMENT)
    expect_error(["train", path, *overrides, "--out", tmp_path / "run"], needle)


def test_train_resume_without_checkpoint(tmp_path):
    _count("train (config)", [1])
    path = _write_config(tmp_path, "ok.yaml", TINY_EXPERIMENT)
    expect_error(["train", path, "--out", tmp_path / "run", "--resume"], "nothing to resume")


def test_real_cli_refuses_malformed_yaml(tmp_path):
    _count("train (subprocess)", [1])
    path = _write_config(tmp_path, "malformed.yaml", BAD_CONFIGS[0][1])
    proc = run_cli("train", path, "--out", tmp_path / "run")
    assert_one_line_failure(proc, "malformed.yaml: malformed YAML (line 2)")
    assert not (tmp_path / "run").exists()


# -- datasets: data check, evaluate, train -----------------------------------------------------
def _folder_dataset(root: Path, n: int = 3, classes: int = 3) -> Path:
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    (root / "classes.yaml").write_text(yaml.safe_dump([f"c{i}" for i in range(classes)]))
    for i in range(n):
        Image.fromarray(smooth_image(32, 40, seed=i)).save(root / "images" / f"s{i}.png")
        mask = np.zeros((32, 40), np.uint8)
        mask[:, 20:] = i % classes
        Image.fromarray(mask, mode="L").save(root / "masks" / f"s{i}.png")
    return root


def _break_dataset(root: Path, how: str) -> str:
    """Damage sample s1 of a folder dataset; return the file name the error must name."""
    mask_path = root / "masks" / "s1.png"
    if how == "wrong_size_mask":
        Image.fromarray(np.zeros((16, 16), np.uint8), mode="L").save(mask_path)
    elif how == "ids_outside_classes":
        Image.fromarray(np.full((32, 40), 7, np.uint8), mode="L").save(mask_path)
    elif how == "rgb_mask":
        rgb = np.zeros((32, 40, 3), np.uint8)
        rgb[:, :20] = (128, 0, 0)
        Image.fromarray(rgb).save(mask_path)
    elif how == "truncated_image":
        path = root / "images" / "s1.png"
        path.write_bytes(path.read_bytes()[:100])
        return "s1.png"
    elif how == "truncated_mask":
        mask_path.write_bytes(mask_path.read_bytes()[:60])
    elif how == "missing_mask":
        mask_path.unlink()
    return "s1.png"


DATASET_DAMAGE = [
    ("wrong_size_mask", "16x16"),
    ("ids_outside_classes", "outside"),
    ("rgb_mask", "RGB"),
    ("truncated_image", "s1.png"),
    ("truncated_mask", "s1.png"),
    ("missing_mask", "s1"),
]


@pytest.mark.parametrize("how, needle", _count("data check", DATASET_DAMAGE))
def test_data_check_names_the_broken_pair(tmp_path, how, needle):
    root = _folder_dataset(tmp_path / "ds")
    name = _break_dataset(root, how)
    result = CliRunner().invoke(app, ["data", "check", str(root), "--split", "train"])
    assert result.exit_code != 0, result.output
    assert "Traceback" not in result.output
    if isinstance(result.exception, AtrousError):
        message = str(result.exception)
    else:
        problems = [ln for ln in result.output.splitlines() if ln.startswith("problem:")]
        assert len(problems) == 1, result.output
        message = problems[0]
    assert name in message and needle in message, message


@pytest.mark.parametrize(
    "how, needle",
    _count(
        "evaluate",
        [
            ("wrong_size_mask", "16x16"),
            ("ids_outside_classes", "outside"),
            ("rgb_mask", "RGB"),
            ("truncated_image", "s1.png"),
        ],
    ),
)
def test_evaluate_refuses_broken_dataset(model, tmp_path, how, needle):
    root = _folder_dataset(tmp_path / "ds", classes=5)
    name = _break_dataset(root, how)
    out = tmp_path / "result.json"
    expect_error(
        ["evaluate", model, root, "--split", "train", "--json-out", out, "--threads", "2"],
        needle,
        names=name,
    )
    assert not out.exists()


def test_empty_dataset_folder_everywhere(model, tmp_path):
    _count("data check", [1])
    _count("evaluate", [1])
    _count("train (data)", [1])
    empty = tmp_path / "empty"
    empty.mkdir()
    expect_error(["data", "check", empty], "empty")
    expect_error(["evaluate", model, empty], "empty")
    config = {**TINY_EXPERIMENT, "data": {"kind": "folder", "root": str(empty)}}
    path = _write_config(tmp_path, "empty.yaml", config)
    expect_error(["train", path, "--out", tmp_path / "run"], "empty")


def test_train_on_dataset_with_truncated_image_fails_cleanly(tmp_path):
    _count("train (data)", [1])
    root = _folder_dataset(tmp_path / "ds", n=4, classes=3)
    _break_dataset(root, "truncated_image")
    data = {"kind": "folder", "root": str(root), "crop_size": 32}
    path = _write_config(tmp_path, "exp.yaml", {**TINY_EXPERIMENT, "data": data})
    out = tmp_path / "run"
    expect_error(["train", path, "--out", out], "s1.png")
    assert_clean_folder(out)


# -- quantize, prune, benchmark, profile, optimize -------------------------------------------
def _quantize_cases(bad_models: Path, tmp: Path, model: Path) -> dict[str, tuple[list, str]]:
    empty = tmp / "empty"
    empty.mkdir(exist_ok=True)
    out = ["--out", tmp / "q" / "m.int8.onnx", "--num", "2", "--limit", "2", "--runs", "1"]
    return {
        "quantize truncated checkpoint": (
            ["quantize", bad_models / "truncated.pt", "--calib", "synthetic", *out],
            "truncated.pt",
        ),
        "quantize classifier onnx": (
            ["quantize", bad_models / "classifier.onnx", "--calib", "synthetic", *out],
            "classifier.onnx",
        ),
        "quantize empty calibration folder": (
            ["quantize", model, "--calib", empty, *out],
            "empty",
        ),
        "quantize missing calibration folder": (
            ["quantize", model, "--calib", tmp / "nowhere", *out],
            "nowhere",
        ),
        "quantize unknown granularity": (
            ["quantize", model, "--calib", "synthetic", "--granularity", "per-row", *out],
            "per-row",
        ),
        "quantize bad mixed": (
            ["quantize", model, "--calib", "synthetic", "--mixed", "most", *out],
            "most",
        ),
        "prune truncated checkpoint": (
            ["prune", bad_models / "truncated.pt", "--out", tmp / "q" / "p.onnx", "--runs", "1"],
            "truncated.pt",
        ),
        "prune ratio out of range": (
            ["prune", model, "--ratio", "1.5", "--out", tmp / "q" / "p.onnx", "--runs", "1"],
            "1.5",
        ),
        "benchmark truncated checkpoint": (
            ["benchmark", bad_models / "truncated.pt", "--runs", "1", "--warmup", "0"],
            "truncated.pt",
        ),
        "benchmark bad threads": (
            ["benchmark", model, "--threads", "two", "--runs", "1"],
            "--threads",
        ),
        "profile classifier onnx": (
            ["profile", bad_models / "classifier.onnx", "--runs", "1"],
            "classifier.onnx",
        ),
        "optimize empty data folder": (
            ["optimize", model, "--data", empty, "--runs", "1", "--cache", tmp / "c.json"],
            "empty",
        ),
    }


QUANTIZE_CASES = _count(
    "quantize / prune / bench",
    [
        "quantize truncated checkpoint",
        "quantize classifier onnx",
        "quantize empty calibration folder",
        "quantize missing calibration folder",
        "quantize unknown granularity",
        "quantize bad mixed",
        "prune truncated checkpoint",
        "prune ratio out of range",
        "benchmark truncated checkpoint",
        "benchmark bad threads",
        "profile classifier onnx",
        "optimize empty data folder",
    ],
)


@pytest.mark.parametrize("case", QUANTIZE_CASES)
def test_compression_and_measurement_refuse_bad_inputs(bad_models, model, tmp_path, case):
    args, needle = _quantize_cases(bad_models, tmp_path, model)[case]
    expect_error(args, needle)
    assert_clean_folder(tmp_path / "q")
    assert not (tmp_path / "q").exists() or not any((tmp_path / "q").iterdir())


# -- serve -------------------------------------------------------------------------------------
SERVE_CASES = [
    ("text.jpg", 415),
    ("empty.png", 422),
    ("truncated.png", 422),
    ("truncated.jpg", 422),
    ("corrupt.png", 422),
    ("corrupt.jpg", 422),
    ("tiny.png", 422),
    ("huge.png", 413),
]


@pytest.fixture(scope="module")
def serve_client(model):
    from fastapi.testclient import TestClient

    from atrous.serve import create_app

    with TestClient(create_app(model, threads=2)) as client:
        yield client


@pytest.mark.parametrize("name, status", _count("serve", SERVE_CASES))
def test_serve_answers_broken_uploads_with_the_right_status(serve_client, corpus, name, status):
    response = serve_client.post("/v1/segment", content=(corpus / name).read_bytes())
    assert response.status_code == status, response.text
    body = response.json()
    assert "Traceback" not in response.text and "\n" not in body["detail"] and body["error"]


@pytest.mark.parametrize("name, make", _count("serve (valid oddities)", VALID_ODDITIES))
def test_serve_accepts_unusual_images(serve_client, name, make):
    data, want = make(smooth_image(48, 64))
    response = serve_client.post("/v1/segment?format=png", content=data)
    assert response.status_code == 200, response.text
    assert Image.open(io.BytesIO(response.content)).size == (want.shape[1], want.shape[0])


def test_corpus_has_at_least_40_failure_cases():
    failing = {k: v for k, v in CORPUS_SIZE.items() if "valid" not in k}
    assert sum(failing.values()) >= 40, CORPUS_SIZE
