"""One set of numbers: compression tables give mIoU as a fraction (as evaluate does) and
measure multiply-adds at the model's own input size unless --size says otherwise."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from atrous.cli import app
from atrous.cli._common import model_side
from atrous.cost import measure_cost
from atrous.evaluate import evaluate
from atrous.segmenter import Segmenter
from atrous.sources import load_source, source_card


def test_quantize_table_uses_the_model_size_and_fractions(small_checkpoint, tmp_path):
    out = tmp_path / "small.int8.onnx"
    args = [
        "quantize", str(small_checkpoint), "--calib", "synthetic", "--num", "4",
        "--limit", "3", "--out", str(out), "--json", "--runs", "1",
    ]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    fp32, _ = json.loads(result.stdout)["variants"]
    net, card = load_source(small_checkpoint)
    assert model_side(str(small_checkpoint)) == card.preprocessing.size == 64
    assert fp32["gmacs"] == measure_cost(net, (64, 64)).macs / 1e9
    # the float row's mIoU is evaluate's fraction on the same 3 held-out images
    from atrous.cli._common import open_data

    held = open_data("synthetic", "val", source_card(str(small_checkpoint)))
    seg = Segmenter.from_file(tmp_path / "small.int8.float.onnx", "onnxruntime", 2)
    want = evaluate(seg, held, limit=3, progress=False).miou
    assert 0 <= fp32["miou"] <= 1 and abs(fp32["miou"] - round(want, 4)) < 1e-9
