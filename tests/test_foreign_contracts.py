"""Foreign contracts, honestly: normalisation read from a file's metadata or announced as a guess
on every verb, --contract on evaluate/benchmark/serve, the output read chosen by name or index,
fixed non-square inputs letterboxed or stretched, and the random-weights warning on serve.

Every model here is a few hand-built tensors (1x1 convolutions), so each expected mask is
computed independently in NumPy (or by LiteRT/ONNX Runtime on the file itself).
"""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
import yaml
from onnx import TensorProto, helper, numpy_helper
from PIL import Image
from typer.testing import CliRunner

from atrous.card import add_tflite_metadata
from atrous.cli import app
from atrous.errors import ModelError
from atrous.runtimes.contract import NORMALISATION, RESIZE
from atrous.segmenter import Segmenter
from atrous.sources import load_engine
from foreign_models import (
    conv_params,
    onnx_model,
    reference,
    tflite_model,
    tflite_normalization_metadata,
)

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=".*httpx2")
    from fastapi.testclient import TestClient

# the file's own contract for the float models below: pixels / 255 at the image's size
UNIT = ["preprocessing.mean=[0,0,0]", "preprocessing.std=[1,1,1]", "preprocessing.resize=none"]
ZOO = "deeplabv3_mnv2_dm05_os16"


def _contract(items: list[str]) -> list[str]:
    return [arg for item in items for arg in ("--contract", item)]


def _invoke(args: list[str]):
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result


def _guesses(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "normalisation guessed" in line]


def _graph_model(path: Path, nodes, inputs, outputs, initializers) -> Path:
    graph = helper.make_graph(nodes, "foreign", inputs, outputs, initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


# -- normalisation from TFLite metadata ----------------------------------------------------------
def _litert_mask(path: Path, x: np.ndarray) -> np.ndarray:
    """The file's own answer: LiteRT run directly on an NHWC float input, argmax of classes."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path), num_threads=1)
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x[None])
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])[0].argmax(-1)


def test_tflite_metadata_unit_range_is_read_and_the_mask_is_the_files_own(tmp_path):
    pytest.importorskip("ai_edge_litert")
    path = tflite_model(tmp_path / "selfie.tflite", size=24, channels=2, seed=4)
    metadata = tflite_normalization_metadata([0.0], [255.0])  # (pixel - 0) / 255: inputs in [0, 1]
    path.write_bytes(add_tflite_metadata(path.read_bytes(), {"TFLITE_METADATA": metadata}))
    image = np.random.default_rng(1).integers(0, 256, (24, 24, 3), np.uint8)
    Image.fromarray(image).save(tmp_path / "photo.png")
    args = ["predict", str(path), str(tmp_path / "photo.png"), "-o", str(tmp_path / "out")]
    result = _invoke([*args, "--engine", "litert", "--threads", "1", "--no-overlay"])
    assert _guesses(result.stderr) == []  # read, not guessed
    mask = np.asarray(Image.open(tmp_path / "out" / "photo.png"))
    pixels = image.astype(np.float32)
    assert np.array_equal(mask, _litert_mask(path, pixels / 255))
    # the [-1, 1] guess would have given another mask: the metadata mattered
    assert not np.array_equal(mask, _litert_mask(path, pixels / 127.5 - 1))


# -- the guess, announced on every verb ----------------------------------------------------------
@pytest.fixture(scope="module")
def foreign(tmp_path_factory) -> tuple[Path, Path]:
    """A float NCHW ONNX model with no card and no metadata (1x1 conv to 2 logits, any size),
    and a 3-image dataset labelled with the masks of the file's own contract (UNIT)."""
    root = tmp_path_factory.mktemp("foreign")
    path = onnx_model(root / "foreign.onnx", layout="NCHW", dtype="float", channels=2, size=None)
    weight, bias = conv_params(2)
    rng = np.random.default_rng(5)
    for sub in ("images", "masks"):
        (root / "data" / sub).mkdir(parents=True)
    for i in range(3):
        image = rng.integers(0, 256, (24, 32, 3), np.uint8)
        logits = reference(image.astype(np.float32) / 255, weight, bias, sigmoid=False)
        Image.fromarray(image).save(root / "data" / "images" / f"{i}.png")
        Image.fromarray(logits.argmax(-1).astype(np.uint8)).save(
            root / "data" / "masks" / f"{i}.png"
        )
    (root / "data" / "classes.yaml").write_text(yaml.safe_dump(["class_0", "class_1"]))
    return path, root / "data"


def _serve(monkeypatch, args: list[str]):
    """``atrous serve ARGS`` without a server: the app uvicorn would run, and the CLI result."""
    apps = []
    monkeypatch.setattr("uvicorn.run", lambda application, **kw: apps.append(application))
    result = _invoke(["serve", *args])
    return apps[0], result


def test_every_verb_says_the_normalisation_is_a_guess_in_one_line(foreign, monkeypatch, tmp_path):
    path, data = foreign
    model, one = str(path), ["--threads", "1"]
    bench = ["benchmark", model, "--runs", "1", "--warmup", "0", "--network-only", "--json"]
    runs = {
        "inspect": ["inspect", model],
        "predict": ["predict", model, str(data / "images" / "0.png"), "-o", str(tmp_path), *one],
        "evaluate": ["evaluate", model, str(data), "--engine", "onnxruntime", *one],
        "benchmark": [*bench, "--engine", "onnxruntime", "--threads", "1"],
    }
    for verb, args in runs.items():
        lines = _guesses(_invoke(args).stderr)
        assert len(lines) == 1 and "[-1, 1]" in lines[0] and model in lines[0], verb
    _, result = _serve(monkeypatch, [model, "--engine", "onnxruntime", *one])
    assert len(_guesses(result.stderr)) == 1


def test_contract_on_evaluate_benchmark_and_serve_gives_the_files_contract(foreign, monkeypatch):
    path, data = foreign
    base = [str(path), "--engine", "onnxruntime", "--threads", "1"]

    def miou(extra: list[str]) -> float:
        return json.loads(
            _invoke(["evaluate", str(path), str(data), *base[1:], "--json", *extra]).stdout
        )["miou"]

    assert miou(_contract(UNIT)) == pytest.approx(1.0) and miou([]) < 0.99

    bench = ["benchmark", *base, "--runs", "1", "--warmup", "0", "--network-only", "--json"]
    guessed = _invoke(bench)
    given = _invoke([*bench, *_contract([*UNIT[:2], "preprocessing.size=64"])])
    assert json.loads(guessed.stdout)["records"][0]["input_size"] == [520, 520]  # 513, padded
    assert json.loads(given.stdout)["records"][0]["input_size"] == [64, 64]
    assert _guesses(given.stderr) == []

    image = np.asarray(Image.open(data / "images" / "1.png"))
    expected = np.asarray(Image.open(data / "masks" / "1.png"))
    masks = []
    for extra in ([], _contract(UNIT)):
        application, _ = _serve(monkeypatch, [*base, *extra])
        with TestClient(application, base_url="http://localhost") as client:
            png = io.BytesIO()
            Image.fromarray(image).save(png, format="PNG")
            response = client.post("/v1/segment?format=png", content=png.getvalue())
            assert response.status_code == 200, response.text
            masks.append(np.asarray(Image.open(io.BytesIO(response.content))))
    assert np.array_equal(masks[1], expected) and not np.array_equal(masks[0], expected)


# -- the output to read: by name or index --------------------------------------------------------
@pytest.fixture(scope="module")
def two_outputs(tmp_path_factory) -> Path:
    """A float NCHW model with two outputs: 'person' (a 1-channel sigmoid of conv A) first and
    'classes' (3 logits of conv B) second."""
    wa, ba = conv_params(1, seed=1)
    wb, bb = conv_params(3, seed=2)
    nodes = [
        helper.make_node("Conv", ["image", "wa", "ba"], ["ya"]),
        helper.make_node("Sigmoid", ["ya"], ["person"]),
        helper.make_node("Conv", ["image", "wb", "bb"], ["classes"]),
    ]
    dims = [1, "height", "width"]
    return _graph_model(
        tmp_path_factory.mktemp("two") / "two.onnx",
        nodes,
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, *dims[1:]])],
        [
            helper.make_tensor_value_info("person", TensorProto.FLOAT, [1, 1, *dims[1:]]),
            helper.make_tensor_value_info("classes", TensorProto.FLOAT, [1, 3, *dims[1:]]),
        ],
        [
            numpy_helper.from_array(wa.reshape(1, 3, 1, 1), "wa"),
            numpy_helper.from_array(ba, "ba"),
            numpy_helper.from_array(wb.reshape(3, 3, 1, 1), "wb"),
            numpy_helper.from_array(bb, "bb"),
        ],
    )


def test_the_output_is_selected_by_name_or_index(two_outputs, tmp_path):
    image = np.random.default_rng(2).integers(0, 256, (20, 28, 3), np.uint8)
    x = image.astype(np.float32) / 255
    wa, ba = conv_params(1, seed=1)
    wb, bb = conv_params(3, seed=2)
    first = load_engine(two_outputs, "onnxruntime", 1, contract=UNIT)
    assert first[1].output == "probability"  # the default stays the first output
    person = reference(x, wa, ba, sigmoid=True)[..., 0] > 0.5
    assert np.array_equal(Segmenter(*first).predict(image).mask, person)
    expected = reference(x, wb, bb, sigmoid=False).argmax(-1)
    for which in ("output_tensor=classes", "output_tensor=1"):
        engine, card = load_engine(two_outputs, "onnxruntime", 1, contract=[*UNIT, which])
        assert card.output == "logits" and card.num_classes == 3
        assert np.array_equal(Segmenter(engine, card).predict(image).mask, expected)
    with pytest.raises(ModelError, match=r"no output 'mask'; the model's outputs are 0: person"):
        load_engine(two_outputs, "onnxruntime", 1, contract=["output_tensor=mask"])
    # the same on the command line, and from a sidecar card
    Image.fromarray(image).save(tmp_path / "photo.png")
    args = ["predict", str(two_outputs), str(tmp_path / "photo.png"), "--threads", "1"]
    _invoke([*args, "-o", str(tmp_path / "a"), *_contract([*UNIT, "output_tensor=1"])])
    assert np.array_equal(np.asarray(Image.open(tmp_path / "a" / "photo.png")), expected)
    _invoke([*args, "-o", str(tmp_path / "b"), *_contract(UNIT), "--output-tensor", "classes"])
    assert np.array_equal(np.asarray(Image.open(tmp_path / "b" / "photo.png")), expected)
    shown = _invoke(["inspect", str(two_outputs), "--output-tensor", "classes"]).stdout
    assert "0: person, 1: classes (reading classes)" in shown and "class_2" in shown


# -- fixed non-square inputs ---------------------------------------------------------------------
H, W = 144, 256  # MediaPipe's landscape selfie segmenter input


@pytest.fixture(scope="module")
def landscape(tmp_path_factory) -> tuple[Path, np.ndarray, np.ndarray, np.ndarray]:
    """A fixed 1x3x144x256 float model whose labels depend on position: argmax of a 1x1 conv
    plus a per-pixel bias, inside the graph (uint8 labels out); its weights, bias and the
    per-pixel bias."""
    weight, bias = conv_params(3, seed=7)
    position = np.random.default_rng(8).normal(scale=2.0, size=(1, 3, H, W)).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["image", "w", "b"], ["y"]),
        helper.make_node("Add", ["y", "position"], ["z"]),
        helper.make_node("ArgMax", ["z"], ["index"], axis=1, keepdims=0),
        helper.make_node("Cast", ["index"], ["labels"], to=TensorProto.UINT8),
    ]
    path = _graph_model(
        tmp_path_factory.mktemp("landscape") / "landscape.onnx",
        nodes,
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, H, W])],
        [helper.make_tensor_value_info("labels", TensorProto.UINT8, [1, H, W])],
        [
            numpy_helper.from_array(weight.reshape(3, 3, 1, 1), "w"),
            numpy_helper.from_array(bias, "b"),
            numpy_helper.from_array(position, "position"),
        ],
    )
    return path, weight, bias, position[0]


def _labels(x: np.ndarray, weight, bias, position: np.ndarray) -> np.ndarray:
    """The landscape model in NumPy on an H' x W' x 3 input in [0, 1] (H' <= H, W' <= W)."""
    h, w = x.shape[:2]
    logits = reference(x, weight, bias, sigmoid=False) + position[:, :h, :w].transpose(1, 2, 0)
    return logits.argmax(-1)


def test_non_square_input_letterboxed_or_stretched_and_mapped_back(landscape):
    path, weight, bias, position = landscape
    # a 288x256 portrait photo made of 2x2 blocks, so both resizes are exact in NumPy
    base = np.random.default_rng(9).integers(0, 256, (H, W // 2, 3), np.uint8)
    image = base.repeat(2, axis=0).repeat(2, axis=1)
    _, guessed = load_engine(path, "onnxruntime", 1)
    assert guessed.preprocessing.resize == "stretch" and RESIZE in guessed.assumed
    assert guessed.preprocessing.input_size == (H, W) and NORMALISATION in guessed.assumed
    masks = {}
    for resize in ("letterbox", "stretch"):
        contract = [*UNIT[:2], f"preprocessing.resize={resize}"]
        engine, card = load_engine(path, "onnxruntime", 1, contract=contract)
        assert card.assumed == {}  # both settled by the contract
        masks[resize] = Segmenter(engine, card).predict(image).mask
        assert masks[resize].shape == image.shape[:2]
    # letterbox: the photo fits as 144x128 (the base itself) at the top left of 144x256
    letterbox = _labels(base / 255, weight, bias, position).repeat(2, 0).repeat(2, 1)
    # stretch: 288 rows -> 144 (the block pairs), 256 columns kept; rows doubled back
    stretched = base.repeat(2, axis=1) / 255
    stretch = _labels(stretched, weight, bias, position).repeat(2, 0)
    assert np.array_equal(masks["letterbox"], letterbox)
    assert np.array_equal(masks["stretch"], stretch)
    assert not np.array_equal(letterbox, stretch)


# -- zoo models without weights ------------------------------------------------------------------
def test_serve_warns_that_a_zoo_model_has_random_weights(monkeypatch):
    _, result = _serve(monkeypatch, [ZOO, "--threads", "1"])
    lines = [line for line in result.stderr.splitlines() if "random weights" in line]
    assert len(lines) == 1 and lines[0].startswith(f"warning: {ZOO}: random weights")
