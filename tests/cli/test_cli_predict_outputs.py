"""``atrous predict`` never writes over its inputs, names outputs that fit the file system and
names the engine ``--engine auto`` picked; ``atrous export`` writes beside its input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from atrous.cli import app
from atrous.errors import InputError
from atrous.outputs import NAME_MAX, beside_input, fit_name, output_stems

runner = CliRunner()


def _image(path: Path, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (40, 48, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def _run(*args) -> object:
    return runner.invoke(app, [str(a) for a in args])


@pytest.mark.parametrize("inputs", [["a.png"], ["b.jpg", "b_overlay.jpg"]])
def test_predict_refuses_an_output_folder_holding_its_inputs(small_checkpoint, tmp_path, inputs):
    """`predict DIR --out DIR` would replace a.png by its mask, b_overlay.jpg by b.jpg's overlay
    (and segment that overlay on the next run): refused in one line, nothing written."""
    folder = tmp_path / "photos"
    before = {n: _image(folder / n, i).read_bytes() for i, n in enumerate(inputs)}
    for target in (folder, folder / inputs[0]):
        result = _run("predict", small_checkpoint, target, "--out", folder, "--engine", "torch")
        assert isinstance(result.exception, InputError), result.output
        assert "holds the input" in str(result.exception)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


def test_predict_into_a_subfolder_of_the_inputs_works(small_checkpoint, tmp_path):
    folder = tmp_path / "photos"
    _image(folder / "a.png")
    _image(folder / "a_overlay.jpg", 1)
    result = _run("predict", small_checkpoint, folder, "--out", folder / "masks")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (folder / "masks").iterdir()) == [
        "a.png", "a_overlay.jpg", "a_overlay.png", "a_overlay_overlay.jpg",
    ]  # fmt: skip


def test_predict_shortens_output_names_too_long_for_the_file_system(small_checkpoint, tmp_path):
    """A 244-byte input name: its mask, overlay and their temporaries must fit in 255 bytes."""
    stem_a, stem_b = "a" * 240, "a" * 239 + "b"  # same 200-byte prefix, different names
    files = [
        _image(tmp_path / "in" / f"{stem_a}.png"),
        _image(tmp_path / "in" / f"{stem_b}.jpg", 1),
    ]
    assert len(files[0].name.encode()) == 244
    out = tmp_path / "out"
    result = _run("predict", small_checkpoint, *files, "--out", out, "--engine", "torch")
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in out.iterdir())
    assert len(names) == 4 and len(set(names)) == 4
    assert all(
        len(n.encode()) <= NAME_MAX - 21 for n in names
    )  # room for .NAME.XXXXXXXX.atrous.tmp
    stems = output_stems(files)
    assert stems[0] != stems[1] and all(s.startswith("a" * 100) for s in stems)
    assert {f"{s}.png" for s in stems} | {f"{s}_overlay.jpg" for s in stems} == set(names)


def test_fit_name_keeps_short_names_and_cuts_at_a_character_boundary():
    assert fit_name("photo") == "photo"
    cut = fit_name("é" * 200)  # 400 bytes of two-byte characters
    assert len((cut + "_overlay.jpg").encode()) <= NAME_MAX - 21
    assert cut.encode().decode() == cut and cut != fit_name("é" * 199 + "e")


def test_predict_auto_names_the_engine_it_picked(small_checkpoint, tmp_path):
    image = _image(tmp_path / "a.png")
    result = _run("predict", small_checkpoint, image, "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output
    # a checkpoint on auto: the fastest verified path, here the cached fp32 fast graph
    assert "engine: onnxruntime (picked by --engine auto)" in result.stdout
    assert result.stdout.strip().splitlines()[-1].startswith("path: fast-fp32")
    explicit = _run("predict", small_checkpoint, image, "-o", tmp_path / "o2", "--engine", "torch")
    assert "picked" not in explicit.output


def test_predict_json_lists_what_was_written(small_checkpoint, tmp_path):
    import json

    image = _image(tmp_path / "a.png")
    result = _run("predict", small_checkpoint, image, "--out", tmp_path / "out", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["engine"] == "onnxruntime" and len(data["images"]) == 1
    assert data["path"] == "fast-fp32"  # no graph beside the checkpoint: the cached fp32 one
    record = data["images"][0]
    assert Path(record["mask"]).is_file() and (record["width"], record["height"]) == (48, 40)
    assert sum(record["classes"].values()) == pytest.approx(1.0, abs=1e-6)


def test_default_outputs_go_beside_the_input(tmp_path, monkeypatch):
    model = tmp_path / "models" / "net.pt"
    model.parent.mkdir()
    model.write_bytes(b"")
    monkeypatch.chdir(tmp_path)
    assert beside_input(model, ".onnx") == model.parent / "net.onnx"
    assert beside_input("deeplabv3_mnv2_dm05_os16", ".int8.onnx") == Path(
        "deeplabv3_mnv2_dm05_os16.int8.onnx"
    )


def test_export_writes_beside_its_input_without_out(small_checkpoint, tmp_path, monkeypatch):
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    source = tmp_path / "models" / "small.pt"
    source.parent.mkdir()
    source.write_bytes(Path(small_checkpoint).read_bytes())
    result = _run("export", source, "--size", "64", "--threads", "1")
    assert result.exit_code == 0, result.output
    assert (source.parent / "small.onnx").is_file() and not list(elsewhere.iterdir())
