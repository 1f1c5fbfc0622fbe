"""The backbone contract, for every registered backbone (a new backbone file is picked up here).

Backbones over 40 M parameters (ResNet-101, Xception-71 today), and for the ONNX export (tracing
and simplifying take ~10 s per 10 M parameters) those over 30 M, run only with ``-m slow``.
"""

from __future__ import annotations

import pytest
from backbone_contract import (
    check_features,
    check_fold,
    check_onnx,
    check_spec,
    check_state_dict,
    param_count_on_meta,
)

from atrous.registry import list_backbones


def _backbones(slow_above: float) -> list:
    """Every registered name, those with more parameters than ``slow_above`` marked slow."""
    return [
        pytest.param(n, marks=pytest.mark.slow) if param_count_on_meta(n) > slow_above else n
        for n in list_backbones()
    ]


BACKBONES = _backbones(40e6)


@pytest.mark.parametrize("name", list_backbones())
def test_registry_entry(name):
    check_spec(name)


@pytest.mark.parametrize("output_stride", [8, 16, 32])
@pytest.mark.parametrize("name", BACKBONES)
def test_feature_info_and_shapes_at_odd_size(name, output_stride):
    check_features(name, output_stride)


@pytest.mark.parametrize("name", BACKBONES)
def test_batchnorm_fold_keeps_output(name):
    check_fold(name)


@pytest.mark.parametrize("name", _backbones(30e6))
def test_onnx_export_matches_pytorch(name, tmp_path):
    check_onnx(name, tmp_path)


@pytest.mark.parametrize("name", BACKBONES)
def test_state_dict_round_trip_and_signature(name):
    check_state_dict(name)
