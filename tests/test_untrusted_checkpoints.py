"""Checkpoints are untrusted: a pickle that would run code is refused before anything runs."""

from __future__ import annotations

import random
import sys

import numpy as np
import pytest
import torch

from atrous.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from atrous.errors import ModelError
from atrous.inspection import inspect_model
from atrous.models import default_card, get_model

sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))
from test_bad_inputs import run_cli  # noqa: E402


class _OpensAFile:
    """Unpickling this calls ``open(target, "w")``: the attack the issue reproduced."""

    def __init__(self, target: str) -> None:
        self.target = target

    def __reduce__(self):
        return (open, (self.target, "w"))


def _plant(tmp_path, name: str = "evil.pt"):
    """A checkpoint-shaped file whose pickle creates ``pwned.txt`` when loaded unsafely."""
    marker = tmp_path / "pwned.txt"
    model = get_model("deeplabv3_mnv2_dm05_os16", num_classes=3)
    payload = {
        "format": "atrous-checkpoint-v1",
        "state_dict": model.state_dict(),
        "card": default_card("deeplabv3_mnv2_dm05_os16", num_classes=3).to_json(),
        "train_state": {"payload": _OpensAFile(str(marker))},
    }
    path = tmp_path / name
    torch.save(payload, path)
    assert not marker.exists()
    # The planted file is real: an unsafe load does run it (proves the test can fail).
    torch.load(path, weights_only=False)
    assert marker.exists()
    marker.unlink()
    return path, marker


def test_code_in_a_checkpoint_never_runs_through_the_api(tmp_path):
    path, marker = _plant(tmp_path)
    for load in (read_checkpoint, load_checkpoint, inspect_model):
        with pytest.raises(ModelError) as info:
            load(path)
        message = str(info.value)
        assert message.startswith(f"{path}: refused"), message
        assert "open" in message and "\n" not in message
        assert not marker.exists(), load.__name__


@pytest.mark.parametrize("verb", ["inspect", "predict", "evaluate", "export"])
def test_code_in_a_checkpoint_never_runs_through_the_cli(tmp_path, verb):
    path, marker = _plant(tmp_path)
    image = tmp_path / "in.png"
    from PIL import Image

    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(image)
    args = {
        "inspect": [path],
        "predict": [path, image, "--out", tmp_path / "out"],
        "evaluate": [path, "synthetic"],
        "export": [path, "--out", tmp_path / "m.onnx"],
    }[verb]
    proc = run_cli(verb, *args)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert "refused" in (proc.stdout + proc.stderr)
    assert not marker.exists()


def test_serve_refuses_to_start_on_such_a_file(tmp_path):
    path, marker = _plant(tmp_path)
    from atrous.serve import create_app

    with pytest.raises(ModelError, match="refused"):
        create_app(path)
    assert not marker.exists()


def test_training_state_round_trips_weights_only(tmp_path):
    """What training saves (optimizer, scheduler, RNG states) loads under the safe loader."""
    from atrous.train.loop import _rng_state, _set_rng_state

    model = get_model("deeplabv3_mnv2_dm05_os16", num_classes=3)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(2, 3, 33, 33)).sum().backward()
    optimizer.step()
    random.seed(3)
    np.random.seed(3)
    torch.manual_seed(3)
    state = {"optimizer": optimizer.state_dict(), "rng": _rng_state(), "epoch": 1}
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    card = default_card("deeplabv3_mnv2_dm05_os16", num_classes=3)
    path = save_checkpoint(tmp_path / "last.pt", model, card, train_state=state)
    loaded = read_checkpoint(path)["train_state"]
    _set_rng_state(loaded["rng"])
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected
    assert loaded["optimizer"]["state"][0]["momentum_buffer"].shape == (
        optimizer.state_dict()["state"][0]["momentum_buffer"].shape
    )


def test_older_training_states_with_numpy_rng_still_load(tmp_path):
    """Checkpoints written before the fix held NumPy's RNG state as an array: still readable."""
    model = get_model("deeplabv3_mnv2_dm05_os16", num_classes=3)
    card = default_card("deeplabv3_mnv2_dm05_os16", num_classes=3)
    np.random.seed(5)
    legacy = {"rng": {"numpy": np.random.get_state()}}
    path = save_checkpoint(tmp_path / "old.pt", model, card, train_state=legacy)
    keys = read_checkpoint(path)["train_state"]["rng"]["numpy"][1]
    assert np.array_equal(keys, np.random.get_state()[1])


def test_torchvision_reference_script_checkpoints_with_args_load(tmp_path):
    """torchvision's references save {'model', 'optimizer', 'epoch', 'args'}: args is a Namespace,
    allowed by name; the weights load with no zoo name."""
    import argparse

    model = get_model("deeplabv3_mnv2_dm05_os16", num_classes=3)
    path = tmp_path / "checkpoint.pth"
    torch.save({"model": model.state_dict(), "epoch": 3, "args": argparse.Namespace(lr=0.02)}, path)
    data = read_checkpoint(path)
    assert data["args"].lr == 0.02 and data["epoch"] == 3
