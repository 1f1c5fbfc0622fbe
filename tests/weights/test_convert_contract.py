"""``atrous convert`` (round trip, mapping report, unknown layouts) and honest foreign contracts
(the normalisation guess announced, read from metadata when present, --contract on every verb)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
import yaml
from PIL import Image
from typer.testing import CliRunner

from atrous.card import add_tflite_metadata, set_onnx_metadata
from atrous.checkpoint import load_checkpoint
from atrous.cli import app
from atrous.convert import mapping_report
from atrous.errors import ModelError
from atrous.models.zoo import get_model
from atrous.runtimes.contract import NORMALISATION
from atrous.sources import load_engine
from atrous.weights import sha256_of
from foreign_models import (
    conv_params,
    onnx_model,
    reference,
    tflite_model,
    tflite_normalization_metadata,
)

ZOO = "deeplabv3_mnv2_dm05_os16"
EXACT = ["preprocessing.mean=[0,0,0]", "preprocessing.std=[1,1,1]", "preprocessing.resize=none"]


def _logits(model: torch.nn.Module) -> torch.Tensor:
    torch.manual_seed(0)
    with torch.no_grad():
        return model.eval()(torch.rand(1, 3, 41, 37))


def test_convert_a_plain_state_dict_round_trips_with_a_card(tmp_path):
    torch.manual_seed(3)
    model = get_model(ZOO).eval()
    source = tmp_path / "plain.pth"
    torch.save({"model": model.state_dict()}, source)  # torchvision's reference-script layout
    out = tmp_path / "model.pt"
    args = ["convert", str(source), "--zoo", ZOO, "-o", str(out), "--licence", "MIT", "--json"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["mapped_count"] == len(model.state_dict())
    assert report["reshaped_count"] == report["unmapped_count"] == report["initialised_count"] == 0
    loaded, card = load_checkpoint(out)
    assert torch.equal(_logits(loaded), _logits(model))
    assert card.weights.origin == "converted" and card.weights.licence == "MIT"
    assert card.weights.source == str(source) and card.weights.sha256 == sha256_of(source)
    assert card.name == ZOO and card.model is not None


def test_convert_reports_extra_tensors_as_unmapped():
    model = get_model(ZOO).eval()
    extra = {**model.state_dict(), "ema.step": torch.tensor([7.0, 7.5])}
    mapped, reshaped, unmapped, initialised = mapping_report(extra, model.state_dict())
    assert unmapped == ["ema.step"] and not reshaped and not initialised
    flat = {k: v.reshape(-1) if v.ndim == 4 else v for k, v in model.state_dict().items()}
    _, reshaped, _, _ = mapping_report(flat, model.state_dict())
    assert reshaped and all(flat[k].ndim == 1 for k in reshaped)


def test_a_file_of_no_known_layout_is_named_in_one_line(tmp_path):
    odd = {"net": {"encoder.layer1.weight": torch.zeros(2)}, "epoch": 3}
    odd_sd = {"encoder.layer1.weight": torch.zeros(2), "decoder.head.bias": torch.zeros(2)}
    torch.save(odd, tmp_path / "odd.pth")
    torch.save(odd_sd, tmp_path / "odd_sd.pth")
    result = CliRunner().invoke(app, ["convert", str(tmp_path / "odd.pth"), "--zoo", ZOO])
    message = str(result.exception)
    assert isinstance(result.exception, ModelError) and "\n" not in message
    assert "matches no known layout" in message and "top-level keys: epoch, net" in message
    result = CliRunner().invoke(app, ["convert", str(tmp_path / "odd_sd.pth"), "--zoo", ZOO])
    message = str(result.exception)
    assert "a plain state_dict of 2 tensors; tensor prefixes: decoder. (1), encoder. (1)" in message
    assert not (tmp_path / "odd_sd-atrous.pt").exists()


# -- foreign contracts ----------------------------------------------------------------------------
@pytest.fixture
def foreign_onnx(tmp_path) -> Path:
    """A float NCHW ONNX model without a card: a 1x1 conv to 2 logits, any size."""
    return onnx_model(
        tmp_path / "foreign.onnx", layout="NCHW", dtype="float", channels=2, size=None
    )


def test_inspect_announces_the_guessed_normalisation(foreign_onnx):
    result = CliRunner().invoke(app, ["inspect", str(foreign_onnx)])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stderr.splitlines() if "guessed" in line]
    assert len(lines) == 1 and "[-1, 1]" in lines[0] and "a guess" not in result.stdout
    result = CliRunner().invoke(app, ["inspect", str(foreign_onnx), "--contract", EXACT[0]])
    assert "guessed" not in result.stderr  # the user said it


def test_normalisation_is_read_from_onnx_metadata(foreign_onnx):
    proto = onnx.load(str(foreign_onnx))
    set_onnx_metadata(proto, {"mean": "127.5,127.5,127.5", "std": "[127.5, 127.5, 127.5]"})
    onnx.save(proto, str(foreign_onnx))
    _, card = load_engine(foreign_onnx, "onnxruntime", 1)
    assert NORMALISATION not in card.assumed
    assert card.preprocessing.mean == pytest.approx((0.5,) * 3)
    assert card.preprocessing.std == pytest.approx((0.5,) * 3)


def test_normalisation_is_read_from_tflite_metadata(tmp_path):
    pytest.importorskip("ai_edge_litert")
    path = tflite_model(tmp_path / "selfie.tflite", size=16, channels=2)
    _, guessed = load_engine(path, "litert", 1)
    assert NORMALISATION in guessed.assumed  # no metadata: the guess, said
    metadata = tflite_normalization_metadata([0.0], [255.0])  # pixels / 255: inputs in [0, 1]
    path.write_bytes(add_tflite_metadata(path.read_bytes(), {"TFLITE_METADATA": metadata}))
    _, card = load_engine(path, "litert", 1)
    assert card.assumed == {}
    assert card.preprocessing.mean == pytest.approx((0.0,) * 3)
    assert card.preprocessing.std == pytest.approx((1.0,) * 3)


def _dataset(root: Path, weight: np.ndarray, bias: np.ndarray) -> Path:
    """Images and the masks the model gives under the EXACT contract (x / 255, native size)."""
    rng = np.random.default_rng(5)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(3):
        image = rng.integers(0, 256, (24, 32, 3), np.uint8)
        logits = reference(image.astype(np.float32) / 255, weight, bias, sigmoid=False)
        Image.fromarray(image).save(root / "images" / f"{i}.png")
        Image.fromarray(logits.argmax(-1).astype(np.uint8)).save(root / "masks" / f"{i}.png")
    (root / "classes.yaml").write_text(yaml.safe_dump(["class_0", "class_1"]))
    return root


def _miou(args: list[str]) -> float:
    result = CliRunner().invoke(app, ["evaluate", *args, "--threads", "1", "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)["miou"]


def test_contract_on_evaluate_scores_the_given_contract(foreign_onnx, tmp_path):
    data = _dataset(tmp_path / "data", *conv_params(2))
    base = [str(foreign_onnx), str(data), "--engine", "onnxruntime"]
    guessed = _miou(base)
    exact = _miou([*base, *(a for item in EXACT for a in ("--contract", item))])
    assert exact == pytest.approx(1.0) and guessed < 0.99
    sidecar = foreign_onnx.with_name(foreign_onnx.name + ".card.json")
    _, card = load_engine(foreign_onnx, "onnxruntime", 1, contract=EXACT)
    sidecar.write_text(card.to_json())  # the same contract as a sidecar card
    assert _miou(base) == pytest.approx(exact)


def test_contract_on_export_changes_the_card_the_file_carries(tiny_checkpoint, tmp_path):
    path, _, _ = tiny_checkpoint
    out = tmp_path / "tiny.onnx"
    names = "[sky,road,car,tree,person]"
    args = ["export", str(path), "-o", str(out), "--size", "64", "--contract", f"classes={names}"]
    result = CliRunner().invoke(app, [*args, "--threads", "1"])
    assert result.exit_code == 0, result.output
    _, card = load_engine(out, "onnxruntime", 1)
    assert card.classes == ["sky", "road", "car", "tree", "person"]
