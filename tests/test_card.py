"""The card's typed sections, their migration from older cards' notes, and card I/O in files."""

from __future__ import annotations

import json

import onnx
import pytest
from onnx import helper

from atrous.card import (
    CARD_KEY,
    ExportFacts,
    FastPathFacts,
    card_from_json,
    onnx_card,
    read_card,
    read_onnx_card,
    write_onnx_card,
)
from atrous.config import DataConfig
from atrous.fastpath import fast_card
from atrous.models import default_card
from atrous.preprocess import label_stride

NAME = "deeplabv3_mnv2_dm05_os16"


def _older(card, notes: dict):
    """``card`` as an older atrous wrote it: the facts in provenance.notes, no typed sections."""
    raw = json.loads(card.to_json())
    for key in ("fast_path", "export"):
        raw.pop(key)
    raw["provenance"].pop("training_data")
    raw["provenance"]["notes"] = notes
    return raw


def test_an_older_card_with_facts_in_its_notes_is_migrated_on_read():
    card = default_card(NAME, num_classes=5)
    notes = {
        "fast_path": {
            "label_stride": 4,
            "precision": "int8",
            "engine": "openvino",
            "normalisation": {"mean": [0.5] * 3, "std": [0.25] * 3, "channel_order": "BGR"},
            "written_by": "a later atrous",  # unknown keys are dropped, not fatal
        },
        "export": {"format": "onnx", "opset": 17, "dynamic": True},
        "config": {"data": {"kind": "synthetic", "image_size": 64}, "train": {"epochs": 3}},
        "comment": "kept",
    }
    migrated = card_from_json(json.dumps(_older(card, notes)))
    assert migrated.fast_path.label_stride == 4 and migrated.fast_path.precision == "int8"
    assert migrated.fast_path.normalisation.channel_order == "BGR"
    assert label_stride(migrated) == 4
    assert migrated.export == ExportFacts(format="onnx", opset=17, dynamic=True)
    assert migrated.provenance.training_data == DataConfig(kind="synthetic", image_size=64)
    # what behaviour reads left the notes; free-form entries stay
    assert set(migrated.provenance.notes) == {"config", "comment"}
    again = card_from_json(migrated.to_json())
    assert again == migrated


def test_typed_sections_round_trip_through_onnx_metadata(tmp_path):
    card = fast_card(default_card(NAME, num_classes=3), 2, precision="int8")
    card.export = ExportFacts(format="onnx", opset=17)
    assert card.fast_path == FastPathFacts(
        label_stride=2,
        precision="int8",
        channel_multiple=16,
        normalisation=card.fast_path.normalisation,
    )
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])],
    )
    proto = helper.make_model(graph)
    assert onnx_card(proto) is None
    write_onnx_card(proto, card)
    write_onnx_card(proto, card)  # replaced, not duplicated
    assert [p.key for p in proto.metadata_props] == [CARD_KEY]
    path = tmp_path / "m.onnx"
    onnx.save(proto, str(path))
    assert read_onnx_card(path) == card == read_card(path)


def test_read_card_refuses_what_is_not_an_exported_file(tmp_path):
    from atrous.errors import ModelError

    with pytest.raises(ModelError, match="not an exported model file"):
        read_card(tmp_path / "weights.pt")
