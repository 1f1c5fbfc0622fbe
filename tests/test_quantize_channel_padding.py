"""Channel padding: internal widths become multiples of the SIMD block, the outputs do not move."""

from __future__ import annotations

import copy

import pytest
import torch

from atrous.models.zoo import get_model
from atrous.quantize.channel_padding import pad_channels
from atrous.quantize.fold import fold_batchnorm
from atrous.quantize.prune import prunable_groups, prune_to_fraction


def _randomised(model: torch.nn.Module) -> torch.nn.Module:
    """Non-trivial BN statistics, so that a wrong padded channel would show in the output."""
    torch.manual_seed(1)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.3, 0.3)
    return model.eval()


@pytest.mark.parametrize("fold", [False, True], ids=["with-bn", "bn-folded"])
def test_padding_widens_internal_groups_and_keeps_the_function(fold):
    torch.manual_seed(0)
    model = _randomised(get_model("deeplabv3_mnv2_dm05_os16", num_classes=5))
    if fold:
        fold_batchnorm(model)
    before = [g.channels for g in prunable_groups(model)]
    assert 72 in before  # width 0.5: the 1/4-resolution blocks expand 12 -> 72
    padded = copy.deepcopy(model)
    widened = pad_channels(padded, 16)
    after = [g.channels for g in prunable_groups(padded)]
    assert widened == sum(c % 16 != 0 for c in before) > 0
    assert after == [-(-c // 16) * 16 for c in before]
    for g in prunable_groups(padded):
        for unit in g.depthwise:
            assert unit.conv.groups == unit.conv.in_channels == g.channels
    x = torch.randn(2, 3, 65, 65)
    with torch.no_grad():
        torch.testing.assert_close(padded(x), model(x), rtol=0, atol=1e-5)


def test_padding_a_pruned_model_restores_simd_widths():
    torch.manual_seed(0)
    model = _randomised(get_model("deeplabv3_mnv2_dm05_os16", num_classes=5))
    pruned = prune_to_fraction(model, 0.6, "l1", divisor=4)
    assert any(g.channels % 16 for g in prunable_groups(pruned))
    padded = copy.deepcopy(pruned)
    pad_channels(padded)
    assert all(g.channels % 16 == 0 for g in prunable_groups(padded))
    x = torch.randn(1, 3, 65, 65)
    with torch.no_grad():
        torch.testing.assert_close(padded(x), pruned(x), rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="at least 1"):
        pad_channels(padded, 0)


def test_padding_after_equalisation_widens_the_per_channel_relu_caps():
    from atrous.quantize.equalize import equalize

    torch.manual_seed(0)
    model = _randomised(get_model("deeplabv3_mnv2_dm05_os16", num_classes=5))
    fold_batchnorm(model)
    equalize(model, relu6="cap")  # ReLU6 -> per-channel caps, one per (72) hidden channel
    padded = copy.deepcopy(model)
    assert pad_channels(padded) > 0
    x = torch.randn(1, 3, 65, 65)
    with torch.no_grad():
        torch.testing.assert_close(padded(x), model(x), rtol=0, atol=1e-5)
