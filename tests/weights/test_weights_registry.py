"""The weights registry: download once into the cache, hash check, offline use, --weights.

Fixture files are served by a local HTTP server on 127.0.0.1 and registered as temporary zoo
entries; nothing is downloaded from the internet.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import http.server
import json
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from atrous.cli import app
from atrous.errors import ConfigError, ModelError
from atrous.models import zoo
from atrous.sources import load_source
from atrous.weights import Weights, cache_dir, cached_path, fetch

BASE = "deeplabv3_mnv2_dm05_os16"
NAME = "tiny_weights_fixture"


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # no request lines in the test output
        pass


@pytest.fixture
def served(tmp_path):
    """A local HTTP server over a folder: yields (folder, base URL, stop)."""
    folder = tmp_path / "served"
    folder.mkdir()
    handler = functools.partial(_Quiet, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    stopped = []

    def stop() -> None:
        if not stopped:
            server.shutdown()
            server.server_close()
            stopped.append(True)

    yield folder, f"http://127.0.0.1:{server.server_address[1]}", stop
    stop()


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """An empty cache for this test ($ATROUS_HOME)."""
    monkeypatch.setenv("ATROUS_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("ATROUS_OFFLINE", raising=False)
    return tmp_path / "cache"


@pytest.fixture
def published(served, cache, monkeypatch):
    """A temporary zoo entry whose weights 'fixture' are a plain state_dict on the server."""
    folder, url, stop = served
    torch.manual_seed(1)
    model = zoo.get_model(BASE, num_classes=3).eval()
    torch.save(model.state_dict(), folder / "tiny-weights.pth")
    digest = hashlib.sha256((folder / "tiny-weights.pth").read_bytes()).hexdigest()
    record = Weights(
        name="fixture",
        url=f"{url}/tiny-weights.pth",
        sha256=digest,
        source="a test fixture",
        licence="CC0-1.0",
        published={"miou": 12.5, "dataset": "voc", "protocol": "none"},
        classes=("background", "cat", "dog"),
    )
    entry = zoo.get_entry(BASE)
    config = entry.config.model_copy(update={"num_classes": 3})
    entry = dataclasses.replace(entry, name=NAME, config=config, weights=(record,))
    monkeypatch.setitem(zoo._REGISTRY, NAME, entry)
    return model, record, stop


def _logits(model: torch.nn.Module) -> torch.Tensor:
    torch.manual_seed(0)
    with torch.no_grad():
        return model.eval()(torch.rand(1, 3, 33, 33))


def test_cache_dir_follows_atrous_home_then_xdg(monkeypatch, tmp_path):
    monkeypatch.setenv("ATROUS_HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home"
    monkeypatch.delenv("ATROUS_HOME")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "atrous"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache_dir() == Path.home() / ".cache" / "atrous"


def test_weights_download_once_then_work_offline(published):
    model, record, stop = published
    path = fetch(record)
    assert path == cached_path(record) and path.is_file()
    assert hashlib.sha256(path.read_bytes()).hexdigest() == record.sha256
    first = _logits(zoo.get_model(NAME, weights="fixture"))
    stop()  # no network from here on
    assert fetch(record) == path
    again = zoo.get_model(NAME, weights="fixture")
    assert torch.equal(_logits(again), first)
    assert torch.equal(first, _logits(model))


def test_load_source_converts_once_and_the_card_records_the_weights(published):
    model, record, stop = published
    net, card = load_source(NAME, weights="fixture")
    stop()
    assert torch.equal(_logits(net), _logits(model))
    assert card.weights.origin == "published" and card.weights.licence == "CC0-1.0"
    assert card.weights.url == record.url and card.weights.published["miou"] == 12.5
    assert card.classes == ["background", "cat", "dog"]
    converted = list((cache_dir() / "checkpoints").glob("*.pt"))
    assert len(converted) == 1  # the atrous checkpoint, used offline from now on
    net2, card2 = load_source(NAME, weights="fixture")
    assert torch.equal(_logits(net2), _logits(model)) and card2 == card


def _cache_files(cache: Path) -> list[Path]:
    return [p for p in cache.rglob("*") if p.is_file()] if cache.exists() else []


def test_a_wrong_hash_is_one_line_and_leaves_nothing_cached(published, cache):
    _, record, _ = published
    bad = dataclasses.replace(record, sha256="0" * 64)
    with pytest.raises(ModelError) as err:
        fetch(bad)
    message = str(err.value)
    assert "\n" not in message and "SHA-256" in message and record.url in message
    assert _cache_files(cache) == []


def test_a_corrupted_download_is_refused_and_not_cached(published, cache):
    _, record, _ = published
    served_file = cache.parent / "served" / record.filename
    data = bytearray(served_file.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte in transit
    served_file.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="does not match its SHA-256"):
        zoo.get_model(NAME, weights="fixture")
    assert _cache_files(cache) == []


def test_a_download_over_its_size_bound_is_refused(published, cache):
    _, record, _ = published
    with pytest.raises(ModelError, match="larger than 100 bytes"):
        fetch(dataclasses.replace(record, size=100))
    assert _cache_files(cache) == []


def test_offline_without_a_cached_file_says_so(published, monkeypatch):
    _, record, _ = published
    monkeypatch.setenv("ATROUS_OFFLINE", "1")
    with pytest.raises(ModelError, match="ATROUS_OFFLINE=1"):
        fetch(record)


def test_an_unknown_weights_name_lists_the_known_ones(published):
    with pytest.raises(ModelError, match=r"no weights named 'imagenet' \(known: fixture\)"):
        zoo.get_model(NAME, weights="imagenet")


def _image(tmp_path: Path) -> Path:
    from PIL import Image

    path = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 48, 3), np.uint8)).save(path)
    return path


def test_predict_warns_about_random_weights_once_on_stderr(tmp_path):
    args = ["predict", BASE, str(_image(tmp_path)), "-o", str(tmp_path / "out"), "--threads", "1"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.stderr.splitlines() if "random weights" in line]
    assert len(warnings) == 1 and warnings[0].startswith(f"warning: {BASE}: random weights")
    assert "random weights" not in result.stdout


def test_predict_with_published_weights_does_not_warn(published, tmp_path):
    args = ["predict", NAME, str(_image(tmp_path)), "-o", str(tmp_path / "out")]
    result = CliRunner().invoke(app, [*args, "--weights", "fixture", "--threads", "1"])
    assert result.exit_code == 0, result.output
    assert "random weights" not in result.output and (tmp_path / "out" / "photo.png").is_file()


def test_weights_on_a_checkpoint_is_refused(tiny_checkpoint):
    path, _, _ = tiny_checkpoint
    result = CliRunner().invoke(app, ["inspect", str(path), "--weights", "voc"])
    assert isinstance(result.exception, ConfigError)
    assert "applies to a zoo name" in str(result.exception)


def test_zoo_lists_published_weights_with_their_miou(published):
    result = CliRunner().invoke(app, ["zoo", "tiny_*", "--no-measure", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert rows[0]["name"] == NAME and rows[0]["weights"] == "fixture 12.5"


@pytest.mark.parametrize("verb", ["predict", "evaluate", "export", "benchmark", "serve", "inspect"])
def test_every_verb_that_opens_a_model_takes_weights_and_contract(verb):
    result = CliRunner().invoke(app, [verb, "--help"], env={"COLUMNS": "200"})
    assert "--weights" in result.output and "--contract" in result.output


def test_get_model_points_foreign_layouts_to_the_resolver(published, monkeypatch):
    _, record, _ = published
    foreign = dataclasses.replace(record, layout="torchvision")
    entry = dataclasses.replace(zoo.get_entry(NAME), weights=(foreign,))
    monkeypatch.setitem(zoo._REGISTRY, NAME, entry)
    with pytest.raises(ModelError, match="torchvision's layout; load them with atrous.sources"):
        zoo.get_model(NAME, weights="fixture")
