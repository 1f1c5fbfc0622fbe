"""Every zoo entry: measured figures recomputed from the real model, published ones within
tolerance, recognised from its bare weights; experiments resolved against the zoo."""

from __future__ import annotations

import pytest
import torch
import yaml

from atrous.bench.cost import measure_cost
from atrous.errors import ConfigError, ModelError
from atrous.inspection import inspect_model
from atrous.models import default_card, get_entry, get_model, list_models
from atrous.models.zoo import resolve_experiment


def _zoo(slow_above_macs: float) -> list:
    """Every zoo name, those over ``slow_above_macs`` at their input size marked slow."""
    return [
        pytest.param(n, marks=pytest.mark.slow) if get_entry(n).macs > slow_above_macs else n
        for n in list_models()
    ]


def test_zoo_lists_and_refuses_unknown_names():
    names = list_models()
    assert names == sorted(names) and "deeplabv3_mnv2_dm05_os16" in names
    assert list_models("deeplabv3plus_*") == [n for n in names if n.startswith("deeplabv3plus_")]
    assert list_models("deeplabv3plus_*") and list_models("nothing*") == []
    with pytest.raises(ModelError, match="unknown model 'nope'; known: deeplabv3"):
        get_entry("nope")


@pytest.mark.parametrize("name", _zoo(10e9))
def test_params_and_multiply_adds_are_those_of_the_model(name):
    entry = get_entry(name)
    cost = measure_cost(get_model(name), entry.input_size)
    assert (cost.params, cost.macs) == (entry.params, entry.macs)
    assert sum(cost.by_stage.values()) == cost.macs


# the published figure, its unit in ours, and how far ours may be from it: TF DeepLab's counts
# are ours; torchvision's head has one more 3x3 convolution (~1.5% params, ~7% multiply-adds)
_PUBLISHED = {"gmacs": (1e9, "macs", 0.05), "gflops": (1e9, "macs", 0.1)}
_PUBLISHED["params_m"] = (1e6, "params", 0.05)


@pytest.mark.parametrize("name", list_models())
def test_published_figures_are_close_to_the_measured_ones(name):
    entry = get_entry(name)
    for key, (unit, ours, tolerance) in _PUBLISHED.items():
        if key in entry.published:
            published = float(entry.published[key]) * unit
            measured = getattr(entry, ours)
            assert abs(measured - published) / published < tolerance, (key, measured)


@pytest.mark.parametrize("name", list_models())
def test_inspect_recognises_architecture_from_plain_weights(tmp_path, name):
    path = tmp_path / "w.pth"
    model = get_model(name)
    torch.save(model.state_dict(), path)
    info = inspect_model(path, (65, 65))
    expected = default_card(name).model
    arch = info["architecture"]
    assert arch["backbone"].split(" ")[0] == expected.backbone
    assert arch["decoder"] == expected.decoder
    assert arch["separable_aspp"] == expected.separable_aspp
    assert len(arch["atrous_rates"]) == len(expected.resolved_rates())
    assert info["params"] == sum(p.numel() for p in model.parameters())


_EXPERIMENT = {
    "model": {"name": "deeplabv3_mnv2_dm05_os16"},
    "data": {"kind": "synthetic", "crop_size": 33},
}


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ({"name": "deeplabv3_nope"}, "key 'model': unknown model 'deeplabv3_nope'; known: "),
        (
            {"name": "deeplabv3_resnet50_os8", "overrides": {"width_mult": 0.5}},
            "key 'model': overrides: width_mult applies to mobilenet_v2, mobilenet_v3_large, ",
        ),
        (
            {"name": "deeplabv3_mnv2_os16", "overrides": {"backbone": "vgg16"}},
            "key 'model': overrides: key 'backbone': unknown backbone 'vgg16'; known: mobilenet_v2",
        ),
    ],
)
def test_experiment_model_is_resolved_against_the_zoo_in_one_line(tmp_path, model, message):
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump({**_EXPERIMENT, "model": model}))
    with pytest.raises(ConfigError) as info:
        resolve_experiment(path)
    text = str(info.value)
    assert text.startswith(f"{path}: ") and message in text and "\n" not in text, text


def test_resolved_experiment_keeps_its_overrides(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(_EXPERIMENT))
    config = resolve_experiment(path, ["model.overrides.output_stride=8"])
    assert config.model.overrides == {"output_stride": 8}
