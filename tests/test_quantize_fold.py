"""BN folding and cross-layer equalisation keep the float function; equalisation evens ranges."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from atrous.models.zoo import get_model
from atrous.quantize.capped_relu import CappedReLU
from atrous.quantize.equalize import equalizable_pairs, equalize
from atrous.quantize.fold import fold_batchnorm


def _with_random_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every BN non-trivial statistics so folding has something to fold."""
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=gen) * 2 - 1)
            m.running_var.copy_(torch.rand(n, generator=gen) * 1.5 + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=gen) * 3 + 0.05)
            m.bias.data.copy_(torch.rand(n, generator=gen) - 0.5)
    return model.eval()


@pytest.mark.parametrize(
    "name",
    [
        "deeplabv3_mnv2_dm05_os16",
        "deeplabv3_mnv2_a050_aspp_os16_512",
        pytest.param("deeplabv3_resnet50_os8", marks=pytest.mark.slow),
        pytest.param("deeplabv3plus_xception65_os16", marks=pytest.mark.slow),
    ],
)
@torch.no_grad()
def test_fold_keeps_output_and_removes_bn(name):
    torch.manual_seed(0)
    overrides = {"num_classes": 4}
    if "mnv2" not in name:
        overrides.update(output_stride=16)
    model = _with_random_bn(get_model(name, **overrides))
    x = torch.randn(1, 3, 65, 65)
    ref = model(x)
    fold_batchnorm(model)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    torch.testing.assert_close(model(x), ref, rtol=1e-4, atol=1e-4)


@torch.no_grad()
def test_equalize_keeps_output_and_balances_depthwise_ranges():
    torch.manual_seed(0)
    model = _with_random_bn(get_model("deeplabv3_mnv2_dm05_os16", num_classes=4))
    x = torch.randn(2, 3, 65, 65)
    ref = model(x)
    fold_batchnorm(model)
    pairs = equalizable_pairs(model)
    dw = [b.conv for _, b in pairs if b.conv.groups > 1]
    spread_before = [_spread(c) for c in dw]
    n = equalize(model)
    assert n == len(pairs) >= 30
    torch.testing.assert_close(model(x), ref, rtol=1e-4, atol=1e-4)
    spread_after = [_spread(c) for c in dw]
    # the per-channel range spread of depthwise kernels shrinks (what per-tensor int8 needs)
    assert sum(spread_after) < 0.5 * sum(spread_before)
    assert any(isinstance(m, CappedReLU) for m in model.modules())


def _spread(conv: nn.Conv2d) -> float:
    """max/min ratio of per-output-channel weight ranges."""
    r = conv.weight.abs().flatten(1).amax(1)
    return float(r.max() / r.min().clamp_min(1e-8))


def test_equalize_refuses_unfolded_model():
    from atrous.errors import ModelError

    model = get_model("deeplabv3_mnv2_dm05_os16", num_classes=4).eval()
    with pytest.raises(ModelError, match="fold BatchNorm"):
        equalize(model)


@torch.no_grad()
def test_equalize_relu6_to_relu_changes_only_clipped_units():
    torch.manual_seed(0)
    model = _with_random_bn(get_model("deeplabv3_mnv2_dm05_os16", num_classes=4))
    fold_batchnorm(model)
    capped, relu = model, copy.deepcopy(model)
    equalize(capped, relu6="cap")
    equalize(relu, relu6="relu")
    assert not any(isinstance(m, CappedReLU) for m in relu.modules())
    pairs = equalizable_pairs(relu)
    assert all(not isinstance(a.act, nn.ReLU6) for a, _ in pairs)
    # same weights either way: only the activation between pairs differs
    for (a, b), (c, d) in zip(equalizable_pairs(capped), pairs, strict=True):
        torch.testing.assert_close(a.conv.weight, c.conv.weight)
        torch.testing.assert_close(b.conv.weight, d.conv.weight)
