"""The backbone registry: lookups, duplicates, and ModelConfig's checks against it."""

from __future__ import annotations

import pytest
import torch

from atrous import registry
from atrous.config import ModelConfig
from atrous.errors import ModelError
from atrous.models.introspect import config_from_state_dict
from atrous.registry import get_backbone, list_backbones, register_backbone


def test_the_shipped_backbones_are_registered_and_globbed():
    names = list_backbones()
    assert {"mobilenet_v2", "resnet50", "resnet101", "xception65", "xception71"} <= set(names)
    assert names == sorted(names)
    assert list_backbones("resnet*") == [n for n in names if n.startswith("resnet")]
    assert get_backbone("resnet101").fields == ("multi_grid", "deep_stem", "uniform_dilation")
    # two names from one file share its signature
    assert get_backbone("xception65").signature is get_backbone("xception71").signature


def test_unknown_backbone_is_one_line_naming_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown backbone 'xception66'; known: mobilenet_v2, "):
        get_backbone("xception66")
    with pytest.raises(ValueError, match="unknown backbone 'xception66'") as info:
        ModelConfig(backbone="xception66")  # once fell into Xception(depth=66)
    assert "resnet50" in str(info.value)


def test_duplicate_names_raise(monkeypatch):
    monkeypatch.setattr(registry, "_BACKBONES", dict(registry._BACKBONES))
    with pytest.raises(ValueError, match="duplicate backbone 'resnet50'"):
        register_backbone("resnet50", signature=lambda state: None)(lambda **kw: None)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"backbone": "resnet50", "width_mult": 0.5}, "width_mult applies to mobilenet_v2, mob"),
        ({"backbone": "resnet50", "channel_divisor": 1}, "channel_divisor applies to mobilenet_v2"),
        ({"backbone": "xception65", "deep_stem": True}, "deep_stem applies to resnet101, resnet50"),
        ({"backbone": "mobilenet_v2", "multi_grid": (1, 2)}, "multi_grid applies to resnet101,"),
        ({"backbone": "mobilenet_v2", "width_mult": 3.0}, "width_mult must be in [0.1, 2.0]"),
    ],
)
def test_fields_a_backbone_does_not_take_must_stay_at_their_default(fields, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("(", r"\(")):
        ModelConfig(**fields)
    backbone = fields["backbone"]
    assert ModelConfig(backbone=backbone).backbone == backbone  # the defaults are fine


def test_build_passes_only_the_declared_fields():
    from atrous.models.deeplab import build_backbone

    net = build_backbone(ModelConfig(backbone="resnet50", deep_stem=True, output_stride=8))
    assert isinstance(net.conv1, torch.nn.Sequential)  # the three-conv stem
    assert net.feature_info[-1].reduction == 8


def test_unrecognised_or_odd_weights_name_the_file():
    state = {"classifier.weight": torch.zeros(3, 8, 1, 1), "backbone.vgg.0.weight": torch.zeros(1)}
    with pytest.raises(ModelError, match=r"^w.pth: unrecognised backbone in state_dict$"):
        config_from_state_dict(state, "w.pth")
    state = {
        "classifier.weight": torch.zeros(3, 8, 1, 1),
        **{f"backbone.layer{i}.0.conv1.weight": torch.zeros(1) for i in (1, 2, 3, 4)},
    }
    with pytest.raises(ModelError, match=r"^w.pth: ResNet with basic blocks \(resnet18/34\)"):
        config_from_state_dict(state, "w.pth")  # no conv3: smp's default encoder, resnet34
    state["backbone.layer1.0.conv3.weight"] = torch.zeros(1)
    with pytest.raises(ModelError, match=r"^w.pth: ResNet with 1 units in layer3 is not 50 or 101"):
        config_from_state_dict(state, "w.pth")
