"""Hostile configs end in one line: deep nesting, huge files, deep override values."""

from __future__ import annotations

import pytest

from atrous.config import MAX_CONFIG_BYTES, apply_overrides, load_yaml
from atrous.errors import ConfigError
from test_bad_inputs import assert_one_line_failure, run_cli

DEEP = "model: " + "[" * 20000 + "]" * 20000 + "\n"  # a 40 KB file of nested lists


def test_deeply_nested_yaml_is_one_config_error(tmp_path):
    path = tmp_path / "deep.yaml"
    path.write_text(DEEP)
    with pytest.raises(ConfigError, match=r"deep.yaml: nested too deeply"):
        load_yaml(path)


def test_deep_override_value_is_one_config_error():
    with pytest.raises(ConfigError, match="nested too deeply"):
        apply_overrides({}, ["model.name=" + "[" * 20000 + "]" * 20000])


def test_oversized_config_is_refused_before_parsing(tmp_path):
    path = tmp_path / "big.yaml"
    path.write_text("a: 1\n" + "#" * MAX_CONFIG_BYTES)
    with pytest.raises(ConfigError, match="too large for a config"):
        load_yaml(path)


def test_real_cli_prints_one_line_for_a_deep_config(tmp_path):
    path = tmp_path / "deep.yaml"
    path.write_text(DEEP)
    proc = run_cli("train", path, "--out", tmp_path / "run")
    assert_one_line_failure(proc, "deep.yaml: nested too deeply")
    assert len((proc.stdout + proc.stderr).splitlines()) <= 2
