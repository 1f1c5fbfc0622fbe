"""The fast graph cache lives under $ATROUS_CACHE like every other atrous cache."""

from __future__ import annotations

from atrous.fastpath import cached_fast_graph
from atrous.models import default_card, get_model

NAME = "deeplabv3_mnv2_dm05_os16"


def test_cached_fast_graph_honours_atrous_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ATROUS_CACHE", str(tmp_path / "cache"))
    model = get_model(NAME, num_classes=3).eval()
    card = default_card(NAME, num_classes=3)
    path = cached_fast_graph(model, card, label_stride=2)
    assert path.parent == tmp_path / "cache" / "fast" and path.is_file()
    stamp = path.stat().st_mtime_ns
    assert cached_fast_graph(model, card, label_stride=2) == path  # reused, not rebuilt
    assert path.stat().st_mtime_ns == stamp
    assert cached_fast_graph(model, card, label_stride=4) != path
