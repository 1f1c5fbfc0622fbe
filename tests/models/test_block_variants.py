"""Block variants (upsampling, activation, separable ASPP): defaults unchanged, each variant
exported with its parity check (ONNX Runtime, OpenVINO), quantized to int8, refused by the fast
path where it cannot follow, and recognised from its weights."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from backbone_contract import small_model
from torch import nn

from atrous.card import ModelCard
from atrous.checkpoint import save_checkpoint
from atrous.config import ModelConfig
from atrous.cost import measure_cost
from atrous.errors import ModelError
from atrous.export import export_model
from atrous.export.parity import synthetic_image
from atrous.fastpath import export_fast_onnx
from atrous.models import DeepLab
from atrous.models.decoder import Upsample
from atrous.models.deeplab import set_output_stride
from atrous.models.introspect import config_from_state_dict
from atrous.quantize.pipeline import quantize_model

VARIANTS = [
    {"upsampling": "nearest"},
    {"upsampling": "transposed"},
    {"activation": "relu6"},
    {"activation": "hardswish"},
    {"separable_aspp": True},
]
SIZES = [(65, 97), (49, 71)]  # odd: the transposed crop and nearest rounding are exercised


def _card(model: DeepLab) -> ModelCard:
    return ModelCard(
        name="variant",
        model=model.config,
        classes=["a", "b", "c"],
        palette=[(0, 0, 0), (255, 0, 0), (0, 255, 0)],
    )


def _label(fields: dict) -> str:
    return ",".join(f"{k}={v}" for k, v in fields.items())


@torch.no_grad()
def test_defaults_are_the_published_blocks():
    """Default config: no upsampling weights, ReLU everywhere in the head and decoder, and the
    logits are exactly the bilinear resize of the classifier's output."""
    model = small_model("mobilenet_v2")
    assert not any("upsample" in k for k in model.state_dict())
    acts = [m for n, m in model.named_modules() if n.startswith(("head", "decoder", "aux"))]
    assert {type(m) for m in acts} & {nn.ReLU6, nn.Hardswish} == set()
    assert any(isinstance(m, nn.ReLU) for m in acts)
    x = torch.randn(1, 3, 65, 97)
    low, _, out = model.backbone(x)
    y = model.classifier(model.decoder(model.head(out), low))
    expected = F.interpolate(y, size=(65, 97), mode="bilinear", align_corners=False)
    assert torch.equal(model(x), expected)


@pytest.mark.parametrize("factor", [2, 4, 16])
@torch.no_grad()
def test_transposed_upsampling_starts_as_bilinear_away_from_the_border(factor):
    x = torch.randn(1, 5, 6, 7)
    size = (6 * factor, 7 * factor)
    got = Upsample("transposed", 5, factor)(x, size)
    expected = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    inner = (..., slice(factor, -factor), slice(factor, -factor))
    torch.testing.assert_close(got[inner], expected[inner])
    assert got.shape == expected.shape


@torch.no_grad()
def test_transposed_upsampling_crops_odd_sizes_and_is_counted_as_multiply_adds():
    model = small_model("mobilenet_v2", upsampling="transposed")
    assert model(torch.randn(1, 3, 65, 97)).shape == (1, 3, 65, 97)
    plain = measure_cost(small_model("mobilenet_v2"), (64, 96)).macs
    # decoder: 16 channels x 4 x 4 positions at stride 16, 8 x 8 kernel; final: 3 x 16 x 24, 8 x 8
    extra = 16 * 4 * 6 * 64 + 3 * 16 * 24 * 64
    assert measure_cost(model, (64, 96)).macs == plain + extra


# one variant in the default suite (each takes 15-20 s); the rest with -m slow
EXPORTED = [VARIANTS[0], *(pytest.param(v, marks=pytest.mark.slow) for v in VARIANTS[1:])]


@pytest.mark.parametrize("fields", EXPORTED, ids=_label)
def test_variant_exports_with_parity_and_quantizes(fields, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # ONNX Runtime's shape inference leaves temporary files in cwd
    model = small_model("mobilenet_v2", **fields)
    card = _card(model)
    checkpoint = save_checkpoint(tmp_path / "v.pt", model, card)
    result = export_model(
        checkpoint, "onnx", tmp_path / "v.onnx", check_sizes=SIZES, with_argmax=False
    )
    at_network = [r for r in result.parity.rows if r.scope != "original"]
    assert result.parity.ok and [r.size for r in at_network] == list(SIZES)
    session = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    x = torch.randn(1, 3, 49, 71)
    (got,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        np.testing.assert_allclose(got, model(x).numpy(), rtol=1e-3, atol=1e-4)
    assert export_model(checkpoint, "openvino", tmp_path / "v.xml", check_sizes=SIZES).parity.ok
    calib = [synthetic_image(65, 97, seed=i) for i in range(4)]
    int8 = quantize_model(checkpoint, calib, tmp_path / "v-int8.onnx", num=4)
    assert int8.path.stat().st_size < result.path.stat().st_size


@pytest.mark.parametrize("upsampling", ["nearest", "transposed"])
def test_the_fast_path_refuses_non_bilinear_upsampling(upsampling, tmp_path):
    model = small_model("mobilenet_v2", upsampling=upsampling)
    with pytest.raises(ModelError, match=f"upsampling='{upsampling}'"):
        export_fast_onnx(model, _card(model), tmp_path / "fast.onnx")


def test_transposed_upsampling_is_recognised_from_the_weights_and_fixes_the_output_stride():
    model = small_model("mobilenet_v2", upsampling="transposed")
    config = config_from_state_dict(model.state_dict(), "w.pth")
    assert config.upsampling == "transposed"
    DeepLab(config).load_state_dict(model.state_dict(), strict=True)
    with pytest.raises(ModelError, match="one output stride"):
        set_output_stride(model, 8)


def test_unknown_variant_values_are_config_errors():
    with pytest.raises(ValueError, match="upsampling"):
        ModelConfig(backbone="mobilenet_v2", upsampling="bicubic")
    with pytest.raises(ValueError, match="activation"):
        ModelConfig(backbone="mobilenet_v2", activation="gelu")
