"""``--resume`` with a new budget or a new train.epochs trains on and says what it does."""

from __future__ import annotations

import pytest
import torch
from _tiny import recording_console, tiny_config

from atrous.errors import ConfigError
from atrous.train import train


def _state(path):
    return torch.load(path, weights_only=True)["train_state"]


def test_resume_with_a_new_budget_trains_on_after_the_budget_stopped_the_run(tmp_path):
    out = tmp_path / "run"
    first = train(tiny_config(epochs=3, max_minutes=1e-4), out, progress=False)
    assert first.epochs_run == 1  # the budget ended the run after its first epoch
    assert _state(out / "last.pt")["scheduler"]["lr_lambdas"][0]["total_iters"] == 1
    console, text = recording_console()
    resumed = train(tiny_config(epochs=3, max_minutes=10), out, resume=True, console=console)
    assert resumed.epochs_run == 3 and [h["epoch"] for h in resumed.history] == [1, 2, 3]
    said = text.getvalue()
    assert "nothing left to train" not in said
    assert "resuming" in said and "at epoch 2/3" in said and "training on to 3" in said, said
    assert "LR schedule re-planned" in said
    assert resumed.history[1]["lr"] > 0  # the re-planned schedule trains again
    assert _state(out / "last.pt")["scheduler"]["lr_lambdas"][0]["total_iters"] == 3


def test_resume_with_more_epochs_replans_and_fewer_is_refused(tmp_path):
    out = tmp_path / "run"
    train(tiny_config(epochs=2), out, progress=False)
    console, text = recording_console()
    again = train(tiny_config(epochs=2), out, resume=True, console=console)
    assert again.epochs_run == 2 and "nothing left to train" in text.getvalue()
    with pytest.raises(ConfigError, match=r"train.epochs=1 but 2 epochs have already run") as err:
        train(tiny_config(epochs=1), out, resume=True, progress=False)
    assert "\n" not in str(err.value) and "needs train.epochs above 2" in str(err.value)
    console, text = recording_console()
    longer = train(tiny_config(epochs=4), out, resume=True, console=console)
    said = text.getvalue()
    assert "at epoch 3/4" in said and "train.epochs 2 -> 4" in said, said
    assert "schedule of train.epochs=2" not in said
    assert longer.epochs_run == 4 and [h["epoch"] for h in longer.history] == [1, 2, 3, 4]
    # the horizon moved to 4 epochs: epoch 3 trains at the 4-epoch curve's LR (0 at 2 before)
    assert longer.history[2]["lr"] == pytest.approx(0.02 * (1 - 3 / 4) ** 0.9)
    assert _state(out / "last.pt")["scheduler"]["lr_lambdas"][0]["total_iters"] == 4
