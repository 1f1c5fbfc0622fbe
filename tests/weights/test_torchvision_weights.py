"""Published torchvision weights through the registry: a torchvision-layout file served locally
(standing in for download.pytorch.org) is fetched, hash-checked, converted once and computes
what torchvision computes. The oracle is torchvision 0.28 from ``.venv/oracles``."""

from __future__ import annotations

import dataclasses
import hashlib
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parents[1] / "models"))
from test_torchvision_import import torchvision_model  # noqa: E402
from test_weights_registry import cache, served  # noqa: E402, F401  (fixtures used below)

from atrous.models import zoo  # noqa: E402
from atrous.sources import load_source  # noqa: E402
from atrous.weights import TORCHVISION_WEIGHTS  # noqa: E402

ENTRY = "lraspp_mobilenet_v3_large_tv"


def test_the_torchvision_entries_carry_their_published_weights():
    for name, record in TORCHVISION_WEIGHTS.items():
        entry = zoo.get_entry(f"{name}_tv")
        assert entry.weights == (record,)
        assert record.url.startswith("https://download.pytorch.org/models/")
        assert record.layout == "torchvision" and len(record.sha256) >= 8


def test_torchvision_weights_download_convert_and_match_torchvision(
    served,  # noqa: F811
    cache,  # noqa: F811
    monkeypatch,
):
    folder, url, stop = served
    reference = torchvision_model("lraspp_mobilenet_v3_large")
    torch.save(reference.state_dict(), folder / "lraspp.pth")
    digest = hashlib.sha256((folder / "lraspp.pth").read_bytes()).hexdigest()
    record = dataclasses.replace(
        TORCHVISION_WEIGHTS["lraspp_mobilenet_v3_large"], url=f"{url}/lraspp.pth", sha256=digest
    )
    entry = dataclasses.replace(zoo.get_entry(ENTRY), weights=(record,))
    monkeypatch.setitem(zoo._REGISTRY, ENTRY, entry)
    net, card = load_source(ENTRY, weights=record.name)
    stop()  # converted once: offline from here on
    again, _ = load_source(ENTRY, weights=record.name)
    x = torch.rand(1, 3, 97, 129)
    with torch.no_grad():
        want = reference(x)["out"]
        assert torch.allclose(net.eval()(x), want, atol=1e-5)
        assert torch.equal(again.eval()(x), net(x))
    assert card.weights.origin == "published" and card.weights.url == record.url
    assert card.preprocessing.resize == "shorter" and card.preprocessing.size == 520
