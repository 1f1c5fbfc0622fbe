"""What every registered backbone must do, as plain checks taking the backbone's name.

``test_backbone_contract.py`` runs them over the registry; ``test_one_file_backbone.py`` runs them
on a throwaway backbone written at test time, so a new backbone is tested with no new test code.
"""

from __future__ import annotations

import inspect
import io
import math
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from torch import nn

from atrous.card import ModelCard
from atrous.config import ModelConfig
from atrous.export.onnx import export_onnx
from atrous.models import DeepLab
from atrous.models.introspect import config_from_state_dict
from atrous.quantize.fold import fold_batchnorm
from atrous.registry import get_backbone, list_backbones

SIZE = (65, 97)  # odd on both sides: every stride-2 layer has to round the same way
# a small head, the V3+ decoder and the aux head, so every part of the assembly is exercised
SMALL = {
    "num_classes": 3,
    "head_channels": 16,
    "decoder": True,
    "decoder_channels": 16,
    "low_level_channels": 8,
    "aux_loss": True,
}


def small_config(name: str, **fields: object) -> ModelConfig:
    """A DeepLabV3+ with ``name`` as backbone and tiny head/decoder widths."""
    return ModelConfig(backbone=name, **{**SMALL, **fields})


def small_model(name: str, seed: int = 0, **fields: object) -> DeepLab:
    """``small_config``'s model in eval mode, every BN with non-trivial statistics."""
    torch.manual_seed(seed)
    model = DeepLab(small_config(name, **fields))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.rand(n, generator=gen) * 0.2 - 0.1)
                m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
                m.weight.copy_(torch.rand(n, generator=gen) + 0.5)
                m.bias.copy_(torch.rand(n, generator=gen) * 0.2 - 0.1)
    return model.eval()


def param_count_on_meta(name: str) -> int:
    """Parameters of the backbone at its defaults, built without memory (for choosing markers)."""
    with torch.device("meta"):
        net = get_backbone(name).factory(output_stride=16)
    return sum(p.numel() for p in net.parameters())


def check_spec(name: str) -> None:
    """The entry: listed under its name, keyword-only factory taking output_stride and exactly
    the declared fields, which are ModelConfig fields."""
    spec = get_backbone(name)
    assert spec.name == name and list_backbones(name) == [name]
    params = inspect.signature(spec.factory).parameters
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params.values()), name
    assert set(params) == {"output_stride", *spec.fields}, (name, list(params))
    model_fields = set(ModelConfig.model_fields) - {"backbone", "output_stride"}
    assert set(spec.fields) <= model_fields, spec.fields


@torch.no_grad()
def check_features(name: str, output_stride: int) -> None:
    """Three feature maps at reductions 4, min(16, OS) and OS, with the announced channels and
    ceil(size / reduction) positions at an odd input size; logits at the input size."""
    model = small_model(name, output_stride=output_stride)
    info = model.backbone.feature_info
    assert [f.name for f in info] == ["low", "aux", "out"]
    assert [f.reduction for f in info] == [4, min(16, output_stride), output_stride]
    seen: list[list[torch.Tensor]] = []
    model.backbone.register_forward_hook(lambda _m, _i, out: seen.append(out))
    out = model(torch.randn(1, 3, *SIZE))
    assert out.shape == (1, 3, *SIZE) and torch.isfinite(out).all()
    for feat, f in zip(seen[0], info, strict=True):
        expected = (1, f.channels, *(math.ceil(s / f.reduction) for s in SIZE))
        assert tuple(feat.shape) == expected, (f, tuple(feat.shape))


@torch.no_grad()
def check_fold(name: str) -> None:
    """Folding BatchNorm into the convolutions removes every BN and keeps the function."""
    model = small_model(name)
    x = torch.randn(1, 3, *SIZE)
    expected = model(x)
    fold_batchnorm(model)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    # deep nets with random statistics reach large activations: the error scales with them
    scale = max(1.0, float(expected.abs().max()))
    torch.testing.assert_close(model(x), expected, rtol=1e-4, atol=1e-5 * scale)
    assert expected.std() > 1e-3  # not two constant maps


def check_onnx(name: str, folder: Path) -> Path:
    """Exported to ONNX (dynamic size), onnxruntime matches PyTorch at two odd sizes."""
    model = small_model(name)
    card = ModelCard(
        name=f"test_{name}",
        model=model.config,
        classes=["a", "b", "c"],
        palette=[(0, 0, 0), (255, 0, 0), (0, 255, 0)],
    )
    path = export_onnx(model, card, folder / f"{name}.onnx", sample_size=SIZE)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for size in (SIZE, (49, 71)):
        x = torch.randn(1, 3, *size)
        with torch.no_grad():
            expected = model(x).numpy()
        (got,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
        assert got.shape == expected.shape == (1, 3, *size)
        np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-3 * np.abs(expected).max())
    return path


def check_state_dict(name: str) -> dict[str, torch.Tensor]:
    """A saved state_dict is claimed by this backbone's signature alone, rebuilds a config with
    the same backbone fields, and loads strictly into the rebuilt model."""
    model = small_model(name)
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    own = {k.removeprefix("backbone."): v for k, v in state.items() if k.startswith("backbone.")}
    signatures = list(dict.fromkeys(get_backbone(n).signature for n in list_backbones()))
    claimants = [sig for sig in signatures if sig(own) is not None]
    assert claimants == [get_backbone(name).signature], f"{name}: claimed by {claimants}"
    config = config_from_state_dict(state, "w.pth")
    assert config.backbone == name
    for field in get_backbone(name).signature(own):
        assert getattr(config, field) == getattr(model.config, field), field
    for field in ("num_classes", "head_channels", "decoder_channels", "low_level_channels"):
        assert getattr(config, field) == getattr(model.config, field), field
    rebuilt = DeepLab(config)
    rebuilt.load_state_dict(state, strict=True)
    for key, value in rebuilt.state_dict().items():
        assert torch.equal(value, state[key]), key
    return state
