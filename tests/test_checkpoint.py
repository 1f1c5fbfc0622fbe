"""Checkpoints: round trip, plain state_dicts, clear mismatch errors, atomic writes."""

from __future__ import annotations

import pytest
import torch

from atrous.checkpoint import load_checkpoint, save_checkpoint
from atrous.errors import ModelError
from atrous.models import get_model


def test_round_trip_gives_identical_outputs(tiny_checkpoint):
    path, model, card = tiny_checkpoint
    loaded, loaded_card = load_checkpoint(path)
    x = torch.randn(1, 3, 65, 97)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    assert loaded_card == card
    assert loaded_card.classes[:2] == ["background", "aeroplane"]
    assert not list(path.parent.glob(".*.tmp"))


def test_plain_state_dict_needs_and_uses_zoo_name(tmp_path):
    model = get_model("deeplabv3_mnv2_dm05_os16").eval()
    path = tmp_path / "plain.pth"
    torch.save(model.state_dict(), path)
    with pytest.raises(ModelError, match="plain state_dict without a model card"):
        load_checkpoint(path)
    loaded, card = load_checkpoint(path, zoo_name="deeplabv3_mnv2_dm05_os16")
    x = torch.randn(1, 3, 33, 33)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    assert card.num_classes == 21


def test_mismatch_lists_missing_unexpected_misshaped(tmp_path):
    state = get_model("deeplabv3_mnv2_dm05_os16", num_classes=5).state_dict()
    state.pop("head.project.0.weight")
    state["extra.weight"] = torch.zeros(1)
    path = tmp_path / "bad.pth"
    torch.save(state, path)
    with pytest.raises(ModelError) as info:
        load_checkpoint(path, zoo_name="deeplabv3_mnv2_dm05_os16")
    message = str(info.value)
    assert "1 missing: head.project.0.weight" in message
    assert "1 unexpected: extra.weight" in message
    assert "mis-shaped: classifier.weight (5, 256, 1, 1) vs (21, 256, 1, 1)" in message
    assert "\n" not in message


def test_truncated_and_foreign_files_are_clear_errors(tmp_path, tiny_checkpoint):
    path, *_ = tiny_checkpoint
    truncated = tmp_path / "trunc.pt"
    truncated.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(ModelError, match="trunc.pt: not a readable checkpoint"):
        load_checkpoint(truncated)
    text = tmp_path / "notes.pt"
    text.write_text("hello")
    with pytest.raises(ModelError, match="notes.pt"):
        load_checkpoint(text)


def test_other_architecture_checkpoint_is_rejected(tmp_path):
    model = get_model("deeplabv3_mnv2_os16")
    path = tmp_path / "w10.pth"
    torch.save(model.state_dict(), path)
    with pytest.raises(ModelError, match="weights do not fit the model"):
        load_checkpoint(path, zoo_name="deeplabv3_mnv2_dm05_os16")


def test_save_is_atomic_when_interrupted(tmp_path, tiny_checkpoint, monkeypatch):
    path, model, card = tiny_checkpoint
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, model, card)
    assert path.read_bytes() == before
    assert not list(path.parent.glob(".*.tmp"))


def test_atomic_writes_get_the_mode_a_plain_open_would(tmp_path):
    """mkstemp creates 0600 files; written outputs must follow the umask like open() does."""
    import os

    from atrous._atomic import atomic_write_bytes

    old = os.umask(0o022)
    try:
        atomic_write_bytes(tmp_path / "a.bin", b"x")
        (tmp_path / "b.bin").write_bytes(b"x")
    finally:
        os.umask(old)
    mode = (tmp_path / "a.bin").stat().st_mode & 0o777
    assert mode == (tmp_path / "b.bin").stat().st_mode & 0o777 == 0o644


def test_inspect_counts_a_fixed_size_file_at_its_own_size(tiny_checkpoint, tmp_path):
    """A .tflite runs at one size: its multiply-adds are counted there, not at 513."""
    from atrous.inspection import inspect_model
    from atrous.runtimes.litert_engine import litert_available

    if not litert_available():
        pytest.skip("ai-edge-litert is not installed")
    from atrous.export import export_model

    path, _, _ = tiny_checkpoint
    result = export_model(path, "tflite", tmp_path / "m.tflite", size=(65, 65))
    assert inspect_model(result.path)["input_size"] == [65, 65]
    assert inspect_model(result.path, (129, 129))["input_size"] == [129, 129]
    assert inspect_model(path)["input_size"] == [513, 513]
