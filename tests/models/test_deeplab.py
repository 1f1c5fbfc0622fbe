"""DeepLab assembly over the zoo: shapes at odd sizes, output strides, heads, atrous convs.

The per-backbone contract is in test_backbone_contract.py, the zoo's figures in test_zoo.py.
"""

from __future__ import annotations

import pytest
import torch

from atrous.bench.cost import measure_cost
from atrous.config import ModelConfig
from atrous.models import build_model, get_entry, get_model, list_models
from atrous.models.backbones import MobileNetV2
from atrous.models.backbones._base import make_divisible


def _heavy(name: str) -> bool:
    """Entries over 10 G multiply-adds at their input size run at small sizes only."""
    return get_entry(name).macs > 10e9


ZOO = list_models()
SMALL = [n for n in ZOO if not _heavy(n)]
LARGE = [n for n in ZOO if _heavy(n)]


@pytest.mark.parametrize(
    "name, size",
    [(n, s) for n in SMALL for s in [(321, 481), (375, 500)]]
    + [(n, s) for n in LARGE for s in [(75, 50), (33, 47)]],
)
def test_zoo_output_shape_at_odd_sizes(name, size):
    torch.manual_seed(0)
    model = get_model(name, num_classes=3).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, *size))
    assert out.shape == (1, 3, *size)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", SMALL)
def test_zoo_trains_with_aux_at_500x375(name):
    model = get_model(name, num_classes=4, aux_loss=True).train()
    out = model(torch.randn(2, 3, 375, 500))
    assert out["out"].shape == out["aux"].shape == (2, 4, 375, 500)
    (out["out"].mean() + out["aux"].mean()).backward()


def test_one_pixel_input_is_rejected_clearly():
    import numpy as np

    from atrous.errors import InputError
    from atrous.models import default_card
    from atrous.runtimes import TorchEngine
    from atrous.segmenter import Segmenter

    seg = Segmenter(
        TorchEngine(get_model("deeplabv3_mnv2_dm05_os16")), default_card("deeplabv3_mnv2_dm05_os16")
    )
    with pytest.raises(InputError, match="1x1 is too small"):
        seg.predict(np.zeros((1, 1, 3), np.uint8))


def test_mac_counter_on_a_known_conv():
    conv = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.Conv2d(8, 8, 3, padding=1, groups=8)
    )
    cost = measure_cost(conv, (10, 20))
    assert cost.macs == 10 * 20 * 8 * 3 * 9 + 10 * 20 * 8 * 9
    assert cost.params == 8 * 3 * 9 + 8 + 8 * 9 + 8


def test_output_stride_uses_dilation_not_truncation():
    os8 = build_model(ModelConfig(backbone="resnet50", output_stride=8, multi_grid=(1, 2, 4)))
    os32 = build_model(ModelConfig(backbone="resnet50", output_stride=32))
    assert sum(p.numel() for p in os8.parameters()) == sum(p.numel() for p in os32.parameters())
    dilations = [
        m.dilation[0]
        for m in os8.backbone.layer4.modules()
        if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3)
    ]
    assert dilations == [4, 8, 16]
    assert os8.head.branches[1][0].dilation == (12, 12)  # rates scaled to OS8


def test_mobilenet_channels_rounded_to_eight():
    assert make_divisible(32 * 0.35) == 16 and make_divisible(24 * 0.75) == 24
    net = MobileNetV2(width_mult=0.35)
    assert all(m.out_channels % 8 == 0 for m in net.modules() if isinstance(m, torch.nn.Conv2d))


def test_image_pooling_broadcasts_without_fixed_size():
    model = get_model("deeplabv3_mnv2_dm05_os16").eval()
    assert not any(isinstance(m, torch.nn.AdaptiveAvgPool2d) for m in model.modules())


def test_bad_config_values_are_rejected():
    with pytest.raises(ValueError, match="output_stride"):
        ModelConfig(backbone="resnet50", output_stride=12)
    with pytest.raises(ValueError, match="width_mult applies to mobilenet_v2"):
        ModelConfig(backbone="resnet50", width_mult=0.5)


@pytest.mark.parametrize("backbone", ["mobilenet_v2", "resnet50"])
def test_zero_init_residuals_makes_blocks_identity(backbone):
    from atrous.models.backbones import zero_init_residuals

    model = build_model(ModelConfig(backbone=backbone, num_classes=3)).eval()
    blocks = [m for m in model.modules() if getattr(m, "residual_norm", None) is not None]
    assert zero_init_residuals(model) == len(blocks) > 0
    for block in blocks:
        assert not block.residual_norm.weight.any()
        if backbone == "mobilenet_v2":  # a fresh BN's shift is zero: the block is the identity
            x = torch.randn(1, block.conv[0][0].in_channels, 8, 8)
            torch.testing.assert_close(block(x), x)


@pytest.mark.parametrize(("rates", "separable"), [((), False), ((2, 4), False), ((2,), True)])
def test_pooled_bias_aspp_computes_the_same_function(rates, separable):
    from atrous.models.aspp import ASPP, PooledBiasASPP

    torch.manual_seed(0)
    aspp = ASPP(24, rates, channels=16, separable=separable)
    with torch.no_grad():  # BN statistics far from the identity, so folding is exercised
        for m in aspp.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
    aspp.eval()
    x = torch.randn(2, 24, 9, 13)
    fused = PooledBiasASPP(aspp)
    with torch.no_grad():
        expected = aspp(x)
        got = fused(x)
    assert got.shape == expected.shape == (2, 16, 9, 13)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    assert expected.std() > 0.1  # the comparison is not between two constant maps
    # the projection reads only the branches; the pooled features enter through a 1x1 conv
    assert fused.project.in_channels == 16 * (len(rates) + 1)
    with pytest.raises(ValueError, match="eval mode"):
        PooledBiasASPP(aspp.train())


@pytest.mark.parametrize(("size", "dilation"), [(12, 2), (13, 2), (11, 3), (9, 6)])
def test_atrous_conv_trains_split_with_the_dilated_convolutions_values_and_gradients(
    size, dilation, monkeypatch
):
    from atrous.models import atrous_conv

    calls = []
    split = atrous_conv.phase_split_conv2d
    monkeypatch.setattr(
        atrous_conv, "phase_split_conv2d", lambda *a: calls.append(a[3]) or split(*a)
    )
    torch.manual_seed(0)
    conv = atrous_conv.AtrousConv2d(6, 6, 3, padding=dilation, dilation=dilation, groups=6)
    x = torch.randn(2, 6, size, size + 1).contiguous(memory_format=torch.channels_last)
    x.requires_grad_()
    grad = torch.randn(2, 6, size, size + 1)
    out = conv.train()(x)
    out.backward(grad)
    assert calls == [dilation]  # the split route ran
    assert out.is_contiguous(memory_format=torch.channels_last)
    x_ref = x.detach().clone().requires_grad_()
    w_ref = conv.weight.detach().clone().requires_grad_()
    b_ref = conv.bias.detach().clone().requires_grad_()
    ref = torch.nn.functional.conv2d(x_ref, w_ref, b_ref, 1, dilation, dilation, 6)
    ref.backward(grad)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(conv.weight.grad, w_ref.grad, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(conv.bias.grad, b_ref.grad, rtol=1e-5, atol=1e-4)
    calls.clear()
    with torch.no_grad():
        conv.eval()(x)  # evaluation, export: the plain dilated convolution
    conv.train()(x.detach().contiguous())  # NCHW input: plain as well
    assert calls == []
    dense = atrous_conv.AtrousConv2d(6, 4, 3, padding=dilation, dilation=dilation)
    dense.train()(x)  # dense dilated convolutions keep oneDNN's own backward
    assert calls == []
    assert list(conv.state_dict()) == ["weight", "bias"]


@pytest.mark.parametrize(
    "name",
    ["deeplabv3_mnv2_dm05_os16", "deeplabv3_resnet50_os8", "deeplabv3plus_xception65_os16"],
)
def test_set_output_stride_in_place_equals_a_model_built_at_that_stride(name):
    """DeepLabV3's train-at-16, evaluate-at-8: the same parameters, the geometry of the other
    output stride (ASPP rates included), the parameter objects kept for the optimizer."""
    from atrous.export.parity import diversify
    from atrous.models import default_card, set_output_stride

    torch.manual_seed(0)
    model = diversify(get_model(name, num_classes=3).eval(), default_card(name, num_classes=3))
    start = model.config.output_stride
    other = 16 if start == 8 else 8
    reference = get_model(name, num_classes=3, output_stride=other).eval()
    reference.load_state_dict(model.state_dict())
    params = [id(p) for p in model.parameters()]
    x = torch.randn(1, 3, 65, 81)
    with torch.no_grad():
        before = model(x)
        set_output_stride(model, other)
        after = model(x)
        expected = reference(x)
    assert model.config.output_stride == other and [id(p) for p in model.parameters()] == params
    torch.testing.assert_close(after, expected)
    assert (before - after).abs().max() > 1e-3  # the geometry really changed
    with torch.no_grad():
        torch.testing.assert_close(set_output_stride(model, start)(x), before)
