"""Non-finite numbers: refused in every config field; a loss that goes NaN stops the run with
one line and leaves the last good checkpoint untouched."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
import yaml
from _tiny import tiny_config
from pydantic import ValidationError

from atrous.card import ModelCard, Provenance
from atrous.config import (
    DataConfig,
    ModelConfig,
    ModelSection,
    Preprocessing,
    StrictModel,
    TrainConfig,
    load_experiment,
)
from atrous.errors import ConfigError
from atrous.train import NonFiniteLoss, train
from atrous.train import run as run_module
from atrous.train.losses import SegmentationLoss

BAD = (math.nan, math.inf, -math.inf)
# the smallest valid instance of each schema (every float field is then replaced in turn)
REQUIRED: dict[type[StrictModel], dict[str, Any]] = {
    ModelConfig: {"backbone": "mobilenet_v2"},
    Preprocessing: {},
    DataConfig: {"kind": "synthetic"},
    TrainConfig: {},
    ModelSection: {"name": "deeplabv3_mnv2_dm05_os16"},
    ModelCard: {"name": "m", "classes": ["a"], "palette": [(0, 0, 0)]},
    Provenance: {},
}


def _float_fields() -> list[tuple[type[StrictModel], str]]:
    fields = []
    for schema in REQUIRED:
        for name, info in schema.model_fields.items():
            if "float" in str(info.annotation):
                fields.append((schema, name))
    return fields


def _shapes(bad: float) -> list[Any]:
    """A non-finite value as a scalar and inside lists/tuples of the lengths schemas use."""
    return [bad, [1.0, bad], (bad, 1.0), (1.0, 1.0, bad)]


def test_every_float_field_of_every_schema_refuses_non_finite_values():
    fields = _float_fields()
    assert {("TrainConfig", "lr"), ("TrainConfig", "max_minutes"), ("DataConfig", "scale_range"),
            ("Preprocessing", "mean"), ("ModelConfig", "width_mult")} <= {
        (s.__name__, n) for s, n in fields
    }  # fmt: skip
    for schema, name in fields:
        for bad in BAD:
            refused = 0
            for value in _shapes(bad):
                try:
                    schema.model_validate({**REQUIRED[schema], name: value})
                except ValidationError as exc:
                    refused += any("finite" in e["msg"] for e in exc.errors())
                    continue
                pytest.fail(f"{schema.__name__}.{name}={value!r} was accepted")
            assert refused, f"{schema.__name__}.{name}: no shape refused as non-finite"


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("train.lr=.nan", "train.lr"),
        ("train.max_minutes=.nan", "train.max_minutes"),
        ("train.max_minutes=.inf", "train.max_minutes"),
        ("train.class_weights=[1.0, .nan]", "train.class_weights"),
        ("data.scale_range=[0.5, .inf]", "data.scale_range"),
        ("train.grad_clip=-.inf", "train.grad_clip"),
    ],
)
def test_non_finite_override_is_a_one_line_error_naming_the_key(tmp_path, override, key):
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(tiny_config().model_dump(mode="json")))
    with pytest.raises(ConfigError) as info:
        load_experiment(path, [override])
    text = str(info.value)
    assert "\n" not in text and f"exp.yaml: key '{key}': must be finite" in text, text


def test_assigning_a_non_finite_value_is_refused_too():
    config = TrainConfig()
    with pytest.raises(ValidationError, match="finite"):
        config.lr = math.nan


class _NaNFromSecondCall(SegmentationLoss):
    """The real loss, NaN from its second call on (a run diverging in epoch 2)."""

    calls = 0

    def forward(self, output, target):
        type(self).calls += 1
        loss = super().forward(output, target)
        return loss * math.nan if type(self).calls >= 2 else loss


class _InfGradients(SegmentationLoss):
    """A finite loss whose gradients are infinite: the update itself ruins the weights."""

    def forward(self, output, target):
        output.register_hook(lambda grad: grad * math.inf)
        return super().forward(output, target)


def _finite(state: dict) -> bool:
    return all(torch.isfinite(t).all() for t in state.values() if t.is_floating_point())


def test_a_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setattr(run_module, "SegmentationLoss", _NaNFromSecondCall)
    out = tmp_path / "run"
    with pytest.raises(NonFiniteLoss) as info:
        train(tiny_config(epochs=3), out, progress=False)
    text = str(info.value)
    assert "\n" not in text and text.startswith("epoch 2: train loss nan at step 1"), text
    assert f"{out / 'last.pt'} keeps the weights after epoch 1" in text
    assert info.value.exit_code == 1
    last = torch.load(out / "last.pt", weights_only=True)
    assert last["train_state"]["epoch"] == 1 and _finite(last["state_dict"])
    assert _finite(torch.load(out / "best.pt", weights_only=True)["state_dict"])


def test_weights_ruined_by_an_update_are_never_saved(tmp_path, monkeypatch):
    monkeypatch.setattr(run_module, "SegmentationLoss", _InfGradients)
    out = tmp_path / "run"
    with pytest.raises(NonFiniteLoss, match=r"epoch 1: the weights became non-finite; no checkp"):
        train(tiny_config(epochs=1), out, progress=False)
    assert not (out / "last.pt").exists() and not (out / "best.pt").exists()
