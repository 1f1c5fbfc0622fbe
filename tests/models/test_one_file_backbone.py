"""A new backbone is one file: written here into a temporary folder on the backbone package's
path, it is built, listed, inspected, exported and put through the whole contract, with no other
file or test edited."""

from __future__ import annotations

import sys

import pytest
import torch
from backbone_contract import (
    check_features,
    check_fold,
    check_onnx,
    check_spec,
    check_state_dict,
    small_model,
)

import atrous.models.backbones as backbone_package
from atrous import registry
from atrous.config import ModelConfig
from atrous.inspection import inspect_model
from atrous.registry import get_backbone, list_backbones

# The whole new backbone: a module, a builder under a decorator, a state-dict signature.
TINY = '''
"""A throwaway three-stage conv net (stride 4, 16, 32 before the output stride applies)."""

import torch
from torch import nn

from atrous.models.backbones._base import Backbone, FeatureInfo, StrideTracker, init_weights
from atrous.registry import register_backbone


class TinyNet(Backbone):
    def __init__(self, *, output_stride=16, width_mult=1.0):
        super().__init__()
        tracker = StrideTracker(output_stride)
        widths = [round(c * width_mult) for c in (8, 16, 24)]
        stages, cin = [], 3
        for cout, strides in zip(widths, ((2, 2), (2, 2), (2,))):
            layers = []
            for s in strides:
                stride, dilation = tracker.step(s)
                layers += [nn.Conv2d(cin, cout, 3, stride, dilation, dilation, bias=False),
                           nn.BatchNorm2d(cout), nn.ReLU()]
                cin = cout
            stages.append(nn.Sequential(*layers))
        self.stages = nn.ModuleList(stages)
        self.feature_info = [FeatureInfo("low", widths[0], 4),
                             FeatureInfo("aux", widths[1], min(16, output_stride)),
                             FeatureInfo("out", widths[2], output_stride)]
        init_weights(self)

    def forward(self, x):
        feats = []
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        return feats


def _signature(state):
    if "stages.2.0.weight" not in state:
        return None
    return {"backbone": "tinynet", "width_mult": state["stages.0.0.weight"].shape[0] / 8}


@register_backbone("tinynet", fields=("width_mult",), signature=_signature)
def tinynet(*, output_stride=16, width_mult=1.0):
    return TinyNet(output_stride=output_stride, width_mult=width_mult)
'''

MODULE = f"{backbone_package.__name__}.tinynet"


@pytest.fixture
def tinynet(tmp_path, monkeypatch):
    """tinynet.py in a folder on the backbone package's path; registry and modules restored."""
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "tinynet.py").write_text(TINY)
    monkeypatch.setattr(backbone_package, "__path__", [*backbone_package.__path__, str(folder)])
    monkeypatch.setattr(registry, "_BACKBONES", dict(registry._BACKBONES))
    yield "tinynet"
    sys.modules.pop(MODULE, None)


def test_one_new_file_is_a_complete_backbone(tinynet, tmp_path):
    assert "tinynet" not in sys.modules and MODULE not in sys.modules
    # built by name: the lookup misses, rescans the package and finds the new file
    config = ModelConfig(backbone=tinynet, num_classes=3, width_mult=0.5)
    assert get_backbone(tinynet).module == MODULE
    # listed, and the config fields it takes are now those of two backbones
    assert tinynet in list_backbones() and list_backbones("tiny*") == [tinynet]
    with pytest.raises(ValueError, match=r"width_mult applies to mobilenet_v2, .*tinynet only"):
        ModelConfig(backbone="resnet50", width_mult=0.5)
    # the whole contract, as the registry-wide tests run it on every backbone
    check_spec(tinynet)
    for output_stride in (8, 16, 32):
        check_features(tinynet, output_stride)
    check_fold(tinynet)
    check_onnx(tinynet, tmp_path)
    check_state_dict(tinynet)
    # inspected from bare weights, as `atrous inspect w.pth` does
    path = tmp_path / "w.pth"
    torch.save(small_model(tinynet, width_mult=0.5).state_dict(), path)
    info = inspect_model(path, (65, 97))
    assert info["architecture"]["backbone"] == "tinynet x0.5"
    assert info["architecture"]["decoder"] is True
    assert config.width_mult == 0.5
