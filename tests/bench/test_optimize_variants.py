"""``atrous optimize`` searches the block variants: parsed, combined, checked and measured on the
zoo model rebuilt with them."""

from __future__ import annotations

import pytest
from torch import nn

from atrous.bench.optimize import candidates, open_candidate, optimize, parse_search
from atrous.bench.pareto import Candidate
from atrous.errors import InputError

DM05 = "deeplabv3_mnv2_dm05_os16"


def test_variant_axes_parse_and_skip_what_the_fast_graph_cannot_run():
    search = parse_search("upsampling=bilinear,nearest;activation=relu,hardswish;engine=fast,torch")
    cands = candidates([DM05], search)
    assert {(c.engine, c.upsampling) for c in cands} == {
        ("fast", "bilinear"),
        ("torch", "bilinear"),
        ("torch", "nearest"),
    }
    assert {c.activation for c in cands} == {"relu", "hardswish"}
    assert parse_search("separable_aspp") == {"separable_aspp": ["false", "true"]}


def test_keys_without_variants_are_those_written_before_them():
    assert Candidate(DM05).key == (
        f"model={DM05},size=513,precision=fp32,engine=fast,threads=2,label_stride=2"
    )
    assert Candidate(DM05, activation="relu6").key.endswith(",activation=relu6")


def test_variants_are_refused_on_checkpoints_and_for_unknown_values(tmp_path):
    with pytest.raises(InputError, match="zoo names only"):
        candidates([str(tmp_path / "trained.pt")], {"activation": ["relu6"]})
    with pytest.raises(InputError, match="--search: key 'upsampling'"):
        candidates([DM05], {"upsampling": ["bicubic"]})


def test_a_variant_candidate_runs_the_rebuilt_model(tmp_path):
    cand = Candidate(DM05, size=129, engine="torch", activation="hardswish", separable_aspp="true")
    seg = open_candidate(cand, tmp_path)
    assert seg.card.model.activation == "hardswish" and seg.card.model.separable_aspp is True
    assert any(isinstance(m, nn.Hardswish) for m in seg.engine.model.modules())
    assert seg.engine.model.head.branches[0][2].__class__ is nn.Hardswish
    seen = []
    result = optimize(
        None,
        1e9,
        models=[DM05],
        search={"activation": ["relu", "hardswish"]},
        measure=lambda c: (seen.append(c.activation) or 50.0, 10.0),
    )
    assert seen == ["relu", "hardswish"] and len(result.measured) == 2
