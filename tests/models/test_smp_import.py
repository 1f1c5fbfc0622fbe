"""segmentation_models_pytorch's DeepLabV3 / DeepLabV3+ state_dicts load through atrous with no
zoo name and compute what smp computes (the oracle: smp 0.6 from ``.venv/oracles``, see
tv_oracle.py); the zoo's ``*_smp`` entries have smp's parameter counts."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from tv_oracle import import_smp, spread_weights
from typer.testing import CliRunner

from atrous.checkpoint import load_checkpoint
from atrous.cli import app
from atrous.convert import convert_checkpoint
from atrous.errors import ModelError
from atrous.export import export_model
from atrous.inspection import inspect_model
from atrous.models.zoo import get_entry, get_model

# zoo entry -> (smp class, encoder)
MODELS = {
    "deeplabv3_resnet50_smp": ("DeepLabV3", "resnet50"),
    "deeplabv3_resnet101_smp": ("DeepLabV3", "resnet101"),
    "deeplabv3_mobilenet_v2_smp": ("DeepLabV3", "mobilenet_v2"),
    "deeplabv3plus_resnet50_smp": ("DeepLabV3Plus", "resnet50"),
    "deeplabv3plus_resnet101_smp": ("DeepLabV3Plus", "resnet101"),
    "deeplabv3plus_mobilenet_v2_smp": ("DeepLabV3Plus", "mobilenet_v2"),
}
MEAN, STD = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
SLOW = pytest.mark.slow


@pytest.fixture(scope="module")
def smp():
    return import_smp()


def build_smp(smp, name: str, **kwargs) -> nn.Module:
    """smp's model of zoo entry ``name`` at smp's defaults (``kwargs`` override them)."""
    arch, encoder = MODELS[name]
    return getattr(smp, arch)(encoder_name=encoder, encoder_weights=None, **kwargs)


@torch.no_grad()
def smp_model(smp, name: str, seed: int = 0) -> nn.Module:
    """A random-init smp model (21 classes, eval) whose argmax varies over an image: fan-in
    convolutions, random BN statistics, the classifier bias centred on a sample's logits."""
    torch.manual_seed(seed)
    model = build_smp(smp, name, classes=21).eval()
    spread_weights(model)
    head = model.segmentation_head[0]
    head.bias -= model(torch.randn(2, 3, 64, 64)).mean((0, 2, 3))
    return model


def count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", list(MODELS))
def test_parameter_counts_equal_smp(smp, name):
    """At smp's defaults (one class) and at the zoo's 21 classes; meta tensors: no memory."""
    with torch.device("meta"):
        assert count(get_model(name, num_classes=1)) == count(build_smp(smp, name))
        assert get_entry(name).params == count(build_smp(smp, name, classes=21))


def _check_logits(smp_net: nn.Module, model: nn.Module, size: tuple[int, int]) -> None:
    """atrous's logits equal smp's at ``size`` and their argmax agrees on >= 99.9% pixels."""
    x = torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected, got = smp_net(x), model(x)
    assert expected.shape == got.shape
    assert expected.std() > 0.1 and len(expected.argmax(1).unique()) >= 3  # a real comparison
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5 * float(expected.abs().max()))
    assert (got.argmax(1) == expected.argmax(1)).float().mean() >= 0.999


@pytest.mark.parametrize(
    "name",
    [
        "deeplabv3_mobilenet_v2_smp",
        "deeplabv3plus_mobilenet_v2_smp",
        "deeplabv3_resnet50_smp",
        "deeplabv3plus_resnet50_smp",
        pytest.param("deeplabv3_resnet101_smp", marks=SLOW),
        pytest.param("deeplabv3plus_resnet101_smp", marks=SLOW),
    ],
)
def test_state_dict_loads_without_zoo_name_and_logits_match(smp, tmp_path, name):
    net = smp_model(smp, name)
    path = tmp_path / "smp.pth"
    torch.save(net.state_dict(), path)
    model, card = load_checkpoint(path)
    assert card.name == name and len(card.classes) == 21
    assert card.preprocessing.pad_multiple == card.model.output_stride  # smp's input rule
    assert set(card.assumed) == {"normalisation", "architecture"}  # what the file cannot say
    assert count(model) == count(net)
    _check_logits(net, model, (64, 96))


def test_the_smp_only_choices_matter(smp, tmp_path):
    """Without uniform dilation or corner-aligned upsampling the logits differ: the tests
    above would catch an importer that ignored them."""
    net = smp_model(smp, "deeplabv3_mobilenet_v2_smp")
    path = tmp_path / "smp.pth"
    torch.save(net.state_dict(), path)
    x = torch.randn(1, 3, 64, 64)
    for field in ("uniform_dilation", "align_corners"):
        other, _ = load_checkpoint(path, "deeplabv3_mobilenet_v2_smp", **{field: False})
        with torch.no_grad():
            assert (other(x) - net(x)).abs().max() > 1e-2, field


@pytest.mark.parametrize(
    "wrap",
    [
        lambda sd: {"state_dict": {f"model.{k}": v for k, v in sd.items()}, "epoch": 1},
        lambda sd: {"model": {f"module.{k}": v for k, v in sd.items()}},
    ],
    ids=["lightning", "ddp"],
)
def test_wrapped_files_load_and_inspect_names_the_layout(smp, tmp_path, wrap):
    net = smp_model(smp, "deeplabv3plus_mobilenet_v2_smp")
    path = tmp_path / "smp.ckpt"
    torch.save(wrap(net.state_dict()), path)
    model, _ = load_checkpoint(path)
    _check_logits(net, model, (64, 64))
    info = inspect_model(path, (64, 64))
    assert "segmentation_models_pytorch" in info["origin"] and "DeepLabV3Plus" in info["origin"]
    assert info["params"] == count(net)


def test_legacy_layout_and_classification_head(smp, tmp_path):
    """smp < 0.3 named V3's decoder ``decoder.0/1/2`` (smp still reads it); the optional
    image-classification head has no atrous equivalent and is left out."""
    net = smp_model(smp, "deeplabv3_mobilenet_v2_smp")
    state = {}
    for key, value in net.state_dict().items():
        for new, old in (("decoder.aspp.", "decoder.0."), ("decoder.conv.", "decoder.1.")):
            key = key.replace(new, old)
        state[key.replace("decoder.bn.", "decoder.2.")] = value
    state["classification_head.3.weight"] = torch.zeros(5, 1280)
    path = tmp_path / "old.pth"
    torch.save(state, path)
    model, _ = load_checkpoint(path)
    _check_logits(net, model, (64, 64))


def test_convert_writes_a_checkpoint_that_computes_the_same(smp, tmp_path):
    net = smp_model(smp, "deeplabv3plus_mobilenet_v2_smp")
    source = tmp_path / "smp.pth"
    torch.save(net.state_dict(), source)
    report = convert_checkpoint(source, tmp_path / "atrous.pt")
    assert report.layout == "smp state_dict"
    assert report.unmapped == [] and report.reshaped == []
    assert len(report.mapped) == len(net.state_dict())
    model, card = load_checkpoint(tmp_path / "atrous.pt")
    assert card.provenance.source.startswith("segmentation_models_pytorch 0.6 DeepLabV3Plus")
    _check_logits(net, model, (64, 64))


def test_an_encoder_atrous_lacks_is_one_line_naming_the_known_ones(smp, tmp_path):
    """smp's default encoder, resnet34, is not an atrous backbone."""
    with torch.device("meta"):
        net = smp.DeepLabV3Plus(encoder_weights=None)
    path = tmp_path / "r34.pth"
    torch.save({k: torch.zeros(v.shape) for k, v in net.state_dict().items()}, path)
    with pytest.raises(ModelError) as error:
        load_checkpoint(path)
    message = str(error.value)
    assert "\n" not in message and str(path) in message
    assert "smp layout" in message and "deeplabv3plus_resnet50_smp" in message


def test_cli_predict_gives_smp_mask(smp, tmp_path):
    """``atrous predict`` on the smp file itself: the mask is smp's argmax at 96 x 128."""
    net = smp_model(smp, "deeplabv3plus_mobilenet_v2_smp", seed=2)
    path = tmp_path / "smp.pth"
    torch.save(net.state_dict(), path)
    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, (4, 5, 3)).astype(np.uint8)
    rgb = np.asarray(Image.fromarray(small).resize((128, 96), Image.BILINEAR))
    Image.fromarray(rgb).save(tmp_path / "in.png")
    x = torch.from_numpy(((rgb / 255.0 - MEAN) / STD).transpose(2, 0, 1)[None]).float()
    with torch.no_grad():
        expected = net(x).argmax(1)[0].numpy()
    out = tmp_path / "out"
    args = ["predict", str(path), str(tmp_path / "in.png"), "--out", str(out)]
    result = CliRunner().invoke(app, [*args, "--engine", "torch"])
    assert result.exit_code == 0, result.output
    assert "normalisation guessed: ImageNet mean/std" in " ".join(result.stderr.split())
    mask = np.asarray(Image.open(out / "in.png"))
    assert mask.shape == expected.shape == (96, 128)
    assert len(np.unique(expected)) >= 3
    assert (mask == expected).mean() >= 0.999


@SLOW
def test_onnx_export_of_an_smp_file_keeps_parity(smp, tmp_path):
    net = smp_model(smp, "deeplabv3plus_mobilenet_v2_smp")
    path = tmp_path / "smp.pth"
    torch.save(net.state_dict(), path)
    result = export_model(
        path, "onnx", tmp_path / "smp.onnx", check_sizes=[(64, 64)], threads=2, with_argmax=False
    )
    assert result.parity.ok, json.dumps(result.parity.to_dict())
    assert all(r.classes_seen >= 3 for r in result.parity.rows)
