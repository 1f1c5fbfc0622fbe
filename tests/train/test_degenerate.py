"""A run whose model predicts background only is flagged and warned about, not silent."""

from __future__ import annotations

import numpy as np
import torch
from _tiny import recording_console, tiny_config

from atrous.evaluate import EvalResult
from atrous.train import train
from atrous.train import validation as validation_module
from atrous.train.distributed import unwrap
from atrous.train.validation import degenerate_reason


def _result(confusion: list[list[int]], miou: float) -> EvalResult:
    matrix = np.array(confusion, dtype=np.int64)
    return EvalResult("dataset", ["bg", "a", "b"], matrix, miou, [], 0.0, 0.0, 0.0, 1)


def test_degenerate_reason_names_one_class_and_all_background_scores():
    # rows: labels, columns: predictions; 60% background, 30% a, 10% b
    only_bg = _result([[60, 0, 0], [30, 0, 0], [10, 0, 0]], miou=0.2)
    assert "single class" in degenerate_reason(only_bg)
    all_bg_level = 0.6 / 3
    weak = _result([[59, 1, 0], [30, 0, 0], [10, 0, 0]], miou=all_bg_level - 0.01)
    assert "no better than all-background (0.2000)" in degenerate_reason(weak)
    good = _result([[55, 5, 0], [3, 27, 0], [1, 0, 9]], miou=0.8)
    assert degenerate_reason(good) is None


def test_a_run_predicting_only_background_warns_and_flags_the_result(tmp_path, monkeypatch):
    real = validation_module.validate

    def background_only(model, card, dataset, **kwargs):
        """Validate a model whose logits say 'background' everywhere."""

        def hook(module, inputs, output):
            logits = torch.full_like(output, -10.0)
            logits[:, 0] = 10.0
            return logits

        handle = unwrap(model).register_forward_hook(hook)
        try:
            return real(model, card, dataset, **kwargs)
        finally:
            handle.remove()

    monkeypatch.setattr(validation_module, "validate", background_only)
    console, text = recording_console()
    result = train(tiny_config(epochs=1), tmp_path / "run", console=console, progress=False)
    assert result.degenerate and result.history[0]["val_degenerate"] is True
    lines = [line for line in text.getvalue().splitlines() if "degenerate" in line]
    assert len(lines) == 1 and lines[0].startswith("warning: the best validation (epoch 1"), lines
