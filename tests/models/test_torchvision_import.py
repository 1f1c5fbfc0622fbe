"""torchvision's segmentation state_dicts load through atrous with no zoo name and compute what
torchvision computes (the oracle: torchvision 0.28 from ``.venv/oracles``, see tv_oracle.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from tv_oracle import import_torchvision, spread_weights

from atrous.checkpoint import load_checkpoint
from atrous.config import Preprocessing
from atrous.errors import ModelError
from atrous.inspection import inspect_model
from atrous.models.zoo import get_entry
from atrous.preprocess import target_size
from atrous.segmenter import Segmenter

# torchvision builder -> (atrous zoo entry, builder keywords)
MODELS = {
    "deeplabv3_mobilenet_v3_large": ("deeplabv3_mobilenet_v3_large_tv", {"aux_loss": True}),
    "lraspp_mobilenet_v3_large": ("lraspp_mobilenet_v3_large_tv", {}),
    "deeplabv3_resnet50": ("deeplabv3_resnet50_tv", {"aux_loss": True}),
    "deeplabv3_resnet101": ("deeplabv3_resnet101_tv", {"aux_loss": True}),
}
MEAN, STD = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
SLOW = pytest.mark.slow


@torch.no_grad()
def torchvision_model(name: str, seed: int = 0) -> nn.Module:
    """A random-init torchvision model (eval) whose argmax varies over an image: fan-in
    convolutions, random BN statistics, the classifier bias centred on a sample's logits."""
    segmentation = import_torchvision()
    torch.manual_seed(seed)
    model = getattr(segmentation, name)(
        weights=None, weights_backbone=None, num_classes=21, **MODELS[name][1]
    ).eval()
    spread_weights(model)
    last = [m for m in model.classifier.modules() if isinstance(m, nn.Conv2d)][-1]
    last.bias -= model(torch.randn(2, 3, 97, 97))["out"].mean((0, 2, 3))
    return model


def image(size: int, seed: int = 0) -> np.ndarray:
    """A smooth random RGB uint8 image (blobs, so masks have regions, not noise)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (size // 32 + 1, size // 32 + 1, 3)).astype(np.float32)
    big = torch.nn.functional.interpolate(
        torch.from_numpy(small).permute(2, 0, 1)[None], size=(size, size), mode="bilinear"
    )
    return big[0].permute(1, 2, 0).round().clamp(0, 255).byte().numpy()


def as_input(rgb: np.ndarray) -> torch.Tensor:
    """torchvision's eval normalisation of an RGB uint8 image, as a 1 x 3 x H x W batch."""
    x = (rgb / 255.0 - MEAN) / STD
    return torch.from_numpy(x.transpose(2, 0, 1)[None]).float()


@pytest.mark.parametrize(
    "name",
    [
        "deeplabv3_mobilenet_v3_large",
        "lraspp_mobilenet_v3_large",
        "deeplabv3_resnet50",
        pytest.param("deeplabv3_resnet101", marks=SLOW),
    ],
)
def test_state_dict_loads_without_zoo_name_and_logits_match(tmp_path, name):
    tv = torchvision_model(name)
    path = tmp_path / "tv.pth"
    torch.save(tv.state_dict(), path)
    model, card = load_checkpoint(path)
    assert card.name == MODELS[name][0]
    assert card.preprocessing.resize == "shorter" and card.preprocessing.size == 520
    assert card.classes[15] == "person" and len(card.classes) == 21
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in tv.parameters())
    x = torch.randn(1, 3, 129, 129)
    with torch.no_grad():
        expected, got = tv(x)["out"], model(x)
    assert expected.std() > 0.1  # not a constant map
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5 * float(expected.abs().max()))


@pytest.mark.parametrize(
    "name",
    [
        "deeplabv3_mobilenet_v3_large",
        "lraspp_mobilenet_v3_large",
        pytest.param("deeplabv3_resnet50", marks=SLOW),
        pytest.param("deeplabv3_resnet101", marks=SLOW),
    ],
)
def test_segmenter_masks_agree_with_torchvision_at_520(tmp_path, name):
    tv = torchvision_model(name, seed=1)
    path = tmp_path / "tv.pth"
    torch.save({"model": tv.state_dict()}, path)  # torchvision's reference-script layout
    rgb = image(520)
    with torch.no_grad():
        expected = tv(as_input(rgb))["out"].argmax(1)[0].numpy()
    mask = Segmenter.from_file(path, engine="torch").predict(rgb).mask
    assert mask.shape == expected.shape == (520, 520)
    assert len(np.unique(expected)) >= 3  # a real comparison, not one class everywhere
    assert (mask == expected).mean() >= 0.999


@pytest.mark.parametrize(
    "wrap",
    [
        lambda sd: {"model": sd, "epoch": 3},
        lambda sd: {"state_dict": {f"module.{k}": v for k, v in sd.items()}},
        lambda sd: {"state_dict": {f"model.{k}": v for k, v in sd.items()}, "epoch": 1},
    ],
    ids=["reference", "ddp", "lightning"],
)
def test_wrapped_and_prefixed_files_load(tmp_path, wrap):
    tv = torchvision_model("lraspp_mobilenet_v3_large")
    path = tmp_path / "tv.pth"
    torch.save(wrap(tv.state_dict()), path)
    model, card = load_checkpoint(path)
    x = torch.randn(1, 3, 65, 65)
    with torch.no_grad():
        torch.testing.assert_close(model(x), tv(x)["out"], rtol=0, atol=1e-5)
    info = inspect_model(path, (65, 65))
    assert "lraspp_mobilenet_v3_large" in info["origin"]
    assert info["architecture"]["head"] == "LR-ASPP"
    assert info["params"] == 3_221_538


def test_unknown_layout_is_one_line_naming_what_it_holds(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"net": {"encoder.conv.weight": torch.zeros(2)}, "step": 5}, path)
    with pytest.raises(ModelError) as error:
        load_checkpoint(path)
    message = str(error.value)
    assert "\n" not in message and str(path) in message
    assert "top-level keys: net, step" in message and "key prefixes: net." in message


def test_torchvision_fcn_is_refused_naming_its_layout(tmp_path):
    segmentation = import_torchvision()
    fcn = segmentation.fcn_resnet50(weights=None, weights_backbone=None, num_classes=21)
    path = tmp_path / "fcn.pth"
    torch.save(fcn.state_dict(), path)
    with pytest.raises(ModelError, match=r"fcn.pth: not a known checkpoint layout .*backbone\."):
        load_checkpoint(path)


def test_shorter_side_resize_matches_torchvision():
    pre = Preprocessing(resize="shorter", size=520)
    assert target_size(pre, 375, 500) == (520, 693)  # int(520 * 500 / 375) = 693
    assert target_size(pre, 500, 333) == (780, 520)  # int(780.78...) truncates
    assert target_size(pre, 520, 520) == (520, 520)
    assert get_entry("lraspp_mobilenet_v3_large_tv").preprocessing.pad_multiple == 1
