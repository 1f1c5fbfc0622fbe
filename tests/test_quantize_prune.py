"""Structured pruning: smaller, cheaper, still a valid network that exports and runs in ORT."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch

from atrous.bench.cost import measure_cost
from atrous.models.zoo import get_model
from atrous.quantize.prune import channel_importance, prunable_groups, prune, prune_to_fraction


@pytest.fixture(scope="module")
def mnv2():
    torch.manual_seed(0)
    return get_model("deeplabv3_mnv2_dm05_os16", num_classes=5).eval()


def test_groups_cover_every_inverted_residual(mnv2):
    groups = prunable_groups(mnv2)
    # 17 inverted residuals, the first has no expansion (nothing internal to prune)
    assert len(groups) == 16
    assert all(len(g.depthwise) == 1 for g in groups)
    assert all(channel_importance(g, "l1").shape == (g.channels,) for g in groups)


def test_pruned_model_is_smaller_and_exports(mnv2, tmp_path):
    result = prune(mnv2, 0.5, method="l1", input_size=(65, 65))
    assert result.params[1] < 0.7 * result.params[0]
    assert 0.4 < result.macs_ratio <= 0.5
    cost = measure_cost(result.model, (65, 65))
    assert cost.macs == result.macs[1]
    # depthwise groups shrank with their channels
    for g in prunable_groups(result.model):
        for unit in g.depthwise:
            assert unit.conv.groups == unit.conv.in_channels == g.channels
    x = torch.randn(1, 3, 65, 65)
    with torch.no_grad():
        ref = result.model(x).numpy()
    path = tmp_path / "pruned.onnx"
    torch.onnx.export(result.model, (x,), str(path), dynamo=False, opset_version=17)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    np.testing.assert_allclose(out, ref, rtol=1e-3, atol=1e-3)


def test_bn_importance_keeps_the_strong_channels(mnv2):
    model = get_model("deeplabv3_mnv2_dm05_os16", num_classes=5).eval()
    group = prunable_groups(model)[3]
    bn = group.depthwise[-1].bn
    with torch.no_grad():
        bn.weight.fill_(0.01)
        bn.weight[:8] = 5.0
    kept_before = group.channels
    small = prunable_groups(prune_to_fraction(model, 0.3, "bn"))[3]
    assert small.channels < kept_before
    assert torch.all(small.depthwise[-1].bn.weight[:8] == 5.0)
