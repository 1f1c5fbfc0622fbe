"""Optimizer: the frontier is really non-dominated, the recommendation fits the budget, caching."""

from __future__ import annotations

import json

import numpy as np
import pytest

from atrous.bench.optimize import candidates, optimize, parse_search
from atrous.bench.pareto import Candidate, Measured, pareto_frontier, recommend
from atrous.errors import InputError


def _sweep_frontier(points):
    """Independent reference: sort by latency (then accuracy), keep strictly improving mIoU
    (and exact duplicates of the last kept point, which dominate nothing and nobody)."""
    best, front = -np.inf, []
    for p in sorted(points, key=lambda p: (p.latency_ms, -p.miou)):
        last = (front[-1].latency_ms, front[-1].miou) if front else None
        if p.miou > best or (p.latency_ms, p.miou) == last:
            front.append(p)
            best = p.miou
    return front


@pytest.mark.parametrize("seed", range(5))
def test_frontier_matches_a_sweep_and_is_non_dominated(seed):
    rng = np.random.default_rng(seed)
    points = [
        Measured(Candidate(f"m{i}"), float(rng.integers(50, 60)), float(rng.integers(5, 15)))
        for i in range(40)
    ]
    front = pareto_frontier(points)
    assert [p.candidate for p in front] == [p.candidate for p in _sweep_frontier(points)]
    for p in front:
        assert not any(q.dominates(p) for q in points)
    for p in points:
        if p not in front:
            assert any(q.dominates(p) for q in front)


def fake_measure(calls):
    """mIoU grows with size and full-resolution labels; latency with size, falls with threads."""

    def measure(c: Candidate):
        calls.append(c)
        miou = 60 + c.size / 50 - (1.5 if c.precision == "int8" else 0) - 0.3 * (c.label_stride > 1)
        ms = c.size**2 / 10000 / c.threads * (0.6 if c.precision == "int8" else 1.0)
        return miou, ms + (2.0 if c.label_stride == 1 else 0.0)

    return measure


def test_optimize_small_search_recommends_within_budget_and_caches(tmp_path):
    search = parse_search("size=129,257,513;precision=fp32,int8;threads=1,2;label_stride=1,4")
    calls: list[Candidate] = []
    cache = tmp_path / "cache.json"
    result = optimize(
        None, 20.0, models=["tiny"], search=search, cache=cache, measure=fake_measure(calls)
    )
    assert len(result.measured) == len(calls) == 24
    assert result.frontier == _sweep_frontier(result.measured)
    best = result.recommended
    assert best is not None and best.latency_ms <= 20.0
    fitting = [m for m in result.measured if m.latency_ms <= 20.0]
    assert best.miou == max(m.miou for m in fitting)
    assert json.loads(cache.read_text())  # measurements are on disk
    again = optimize(
        None, 20.0, models=["tiny"], search=search, cache=cache, measure=fake_measure(calls)
    )
    assert len(calls) == 24 and all(m.cached for m in again.measured)  # nothing re-measured
    assert again.recommended.candidate == best.candidate
    data = again.to_dict()
    assert data["recommended"]["size"] == best.candidate.size and data["frontier"]


def test_no_candidate_in_budget_recommends_the_fastest_with_a_warning():
    result = optimize(
        None, 0.001, models=["tiny"], search={"size": [129, 257]}, measure=fake_measure([])
    )
    assert result.recommended is result.frontier[0] and "warning" in result.notes
    assert recommend(result.frontier, 0.001) is None


def test_candidates_drop_invalid_combinations_and_parse_errors():
    cands = candidates(["m"], {"precision": ["fp32", "int8"], "engine": ["fast", "torch"]})
    assert Candidate("m", precision="int8", engine="torch") not in cands
    assert len(cands) == 3
    assert set(parse_search("size,threads")) == {"size", "threads"}
    with pytest.raises(InputError, match="unknown key 'colour'"):
        parse_search("colour=red")
    with pytest.raises(InputError, match="integers"):
        parse_search("size=big")


def test_real_measurement_on_a_tiny_model_and_report(tmp_path, tiny_checkpoint):
    """One real candidate end to end: export, evaluate-free latency, plot in a report."""
    from atrous.bench.optimize import open_candidate
    from atrous.report import optimize_report

    path, *_ = tiny_checkpoint
    seg = open_candidate(Candidate(str(path), size=65, label_stride=4), tmp_path)
    assert seg.card.output == "logits" and seg.card.preprocessing.size == 65  # fast graph
    assert seg.predict(np.zeros((40, 50, 3), np.uint8)).mask.shape == (40, 50)
    result = optimize(
        None, 5.0, models=[str(path)], search={"size": [65, 97]}, measure=fake_measure([])
    )
    html = optimize_report(result, tmp_path / "o.html").read_text()
    assert html.count("data:image/png;base64,") == 1 and "recommended" in html


def test_int8_candidate_is_the_openvino_fast_graph(tmp_path, tiny_checkpoint):
    from atrous.bench.optimize import open_candidate
    from atrous.export.parity import synthetic_image

    path, *_ = tiny_checkpoint
    calib = [synthetic_image(65, 65, seed=i) for i in range(3)]
    seg = open_candidate(Candidate(str(path), size=65, precision="int8"), tmp_path, calib)
    assert seg.engine.describe()["engine"] == "openvino"
    assert [p.suffix for p in tmp_path.glob("*-int8.*")] in ([".xml", ".bin"], [".bin", ".xml"])
    assert seg.predict(np.zeros((40, 50, 3), np.uint8)).mask.shape == (40, 50)


@pytest.mark.slow
def test_real_optimize_on_synthetic_data(tmp_path, tiny_checkpoint):
    """mIoU from the evaluator and latency from the benchmark, for two real candidates."""
    from atrous.data.synthetic import SyntheticShapes

    path, _, card = tiny_checkpoint
    data = SyntheticShapes("val", length=2, size=64)
    data.classes = data.classes[: card.num_classes]
    result = optimize(
        data,
        1e6,
        models=[str(path)],
        search={"engine": ["fast", "torch"], "size": [65]},
        runs=2,
        cache=tmp_path / "c.json",
    )
    assert len(result.measured) == 2
    for m in result.measured:
        assert 0 <= m.miou <= 1 and m.latency_ms > 0
    assert result.recommended in result.frontier
