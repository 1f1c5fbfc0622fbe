"""Benchmark: JSON/CSV schema, interleaving order, statistics, CLI and HTML report."""

from __future__ import annotations

import csv
import io
import json

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from atrous.bench.latency import BenchTarget, benchmark, with_input_size
from atrous.cli import app
from atrous.errors import InputError
from atrous.models import default_card
from atrous.segmenter import Segmenter


class RecordingEngine:
    """Returns zero logits and appends its name to a shared call log."""

    threads = 1

    def __init__(self, name, log, classes=3):
        self.name, self.log, self.classes = name, log, classes

    def run(self, batch):
        self.log.append(self.name)
        return np.zeros((batch.shape[0], self.classes, *batch.shape[2:]), np.float32)

    def describe(self):
        return {"engine": self.name}


def _targets(log, names=("A", "B")):
    card = default_card("deeplabv3_mnv2_dm05_os16", num_classes=3)
    return [
        BenchTarget(n, lambda threads, n=n: Segmenter(RecordingEngine(n, log), card)) for n in names
    ]


def test_targets_run_interleaved_and_order_is_recorded():
    log: list[str] = []
    result = benchmark(_targets(log), sizes=[33], runs=4, warmup=2, end_to_end=False)
    # every round runs A then B: warm-up rounds as well as timed ones
    assert log == ["A", "B"] * 6
    assert result.order == ["A@33/t2:network", "B@33/t2:network"] * 4


def test_blocks_time_each_target_hot_after_one_untimed_run():
    log: list[str] = []
    result = benchmark(_targets(log), sizes=[33], runs=2, warmup=1, end_to_end=False, block=3)
    assert log == ["A"] * 3 + ["B"] * 3 + ["A"] * 3 + ["B"] * 3 + ["A"] * 3 + ["B"] * 3
    # the first run of every block is not timed: 2 rounds x 2 timed runs per target
    assert result.order == ["A@33/t2:network"] * 2 + ["B@33/t2:network"] * 2 + (
        ["A@33/t2:network"] * 2 + ["B@33/t2:network"] * 2
    )
    assert [r.runs for r in result.records] == [4, 4]


def test_end_to_end_alternates_with_network_and_returns_original_size_masks():
    log: list[str] = []
    result = benchmark(_targets(log), sizes=[33], runs=3, warmup=1, image_size=(40, 60))
    assert result.order[:4] == [
        "A@33/t2:network",
        "A@33/t2:end_to_end",
        "B@33/t2:network",
        "B@33/t2:end_to_end",
    ]
    e2e = result.find("A", "end_to_end")
    assert set(e2e.stages_ms) == {
        "decode_ms",
        "preprocess_ms",
        "infer_ms",
        "postprocess_ms",
        "total_ms",
    }
    assert e2e.runs == 3 and e2e.median_ms > 0


class BatchEngine(RecordingEngine):
    """A RecordingEngine that keeps every batch it is given."""

    def run(self, batch):
        self.log.append(batch.copy())
        return np.zeros((batch.shape[0], self.classes, *batch.shape[2:]), np.float32)


def test_a_given_image_is_what_both_modes_time(tmp_path):
    photo = np.zeros((40, 60, 3), np.uint8)
    photo[:, 30:] = (200, 40, 90)
    cv2.imwrite(str(tmp_path / "p.png"), photo[..., ::-1])
    card = default_card("deeplabv3_mnv2_dm05_os16", num_classes=3)
    batches: list[np.ndarray] = []
    target = BenchTarget("A", lambda threads: Segmenter(BatchEngine("A", batches), card))
    result = benchmark([target], sizes=[33], runs=2, warmup=0, image=tmp_path / "p.png")
    want, _ = with_input_size(Segmenter(RecordingEngine("x", []), card), 33).preprocess([photo])
    assert len(batches) == 4  # network, end to end, twice
    for batch in batches:
        np.testing.assert_array_equal(batch, want)
    assert result.find("A", "end_to_end").runs == 2
    with pytest.raises(InputError, match="nothing.png"):
        benchmark([target], sizes=[33], runs=1, warmup=0, image=tmp_path / "nothing.png")


def test_json_schema_statistics_and_costs():
    log: list[str] = []
    result = benchmark(_targets(log, ["A"]), sizes=[65], threads=[1, 2], runs=5, warmup=0)
    data = json.loads(result.to_json())
    assert data["schema"] == "atrous.benchmark/1"
    assert {"machine", "runs", "warmup", "peak_rss_mb", "order", "records"} <= set(data)
    assert len(data["records"]) == 4  # 2 thread counts x 2 modes
    for rec in data["records"]:
        assert rec["min_ms"] <= rec["median_ms"] <= rec["p90_ms"] <= rec["p99_ms"]
        assert abs(rec["throughput_ips"] - 1e3 / rec["median_ms"]) < 1e-2 * rec["throughput_ips"]
        assert rec["gmacs"] > 0
    net = result.find("A", "network", threads=1)
    # achieved GFLOP/s is 2 x multiply-adds over the median time
    assert abs(net.gflops - 2 * net.gmacs / (net.median_ms / 1e3)) < 0.02 * net.gflops + 0.01
    rows = list(csv.DictReader(io.StringIO(result.to_csv())))
    assert len(rows) == 4 and float(rows[0]["median_ms"]) == result.records[0].median_ms


def test_benchmark_gmacs_match_measured_cost():
    from atrous.bench.cost import measure_cost
    from atrous.models import get_model

    log: list[str] = []
    result = benchmark(_targets(log, ["A"]), sizes=[65], runs=1, warmup=0, end_to_end=False)
    expected = measure_cost(get_model("deeplabv3_mnv2_dm05_os16", num_classes=3), (65, 65)).gmacs
    assert abs(result.records[0].gmacs - expected) < 1e-3


def test_benchmark_cli_writes_json_csv_and_html(tmp_path, tiny_checkpoint):
    path, *_ = tiny_checkpoint
    out = tmp_path / "b.json"
    args = ["benchmark", str(path), "--sizes", "65", "--runs", "2", "--warmup", "1"]
    args += ["--json-out", str(out), "--csv", str(tmp_path / "b.csv")]
    args += ["--report", str(tmp_path / "b.html")]
    cv2.imwrite(str(tmp_path / "wide.png"), np.full((40, 64, 3), 90, np.uint8))
    args += ["--image", str(tmp_path / "wide.png")]  # instead of a square synthetic photo
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    first = data["records"][0]
    height, width = first["input_size"]
    assert height < width, first["input_size"]  # the wide image's batch, not a square one
    # a checkpoint on auto: the default path, here the cached fp32 fast graph
    assert first["file_mb"] > 0 and (first["engine"], first["path"]) == ("onnxruntime", "fast-fp32")
    html = (tmp_path / "b.html").read_text()
    assert html.count("data:image/png;base64,") == 2 and "<table>" in html
    assert 'src="http' not in html


def test_benchmark_cli_bad_threads_is_one_line_error():
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "atrous", "benchmark", "x", "--threads", "two"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and "--threads" in proc.stderr and "Traceback" not in proc.stderr


def test_evaluation_report_is_self_contained(tmp_path):
    from types import SimpleNamespace

    from atrous.report import evaluation_report

    result = SimpleNamespace(
        classes=["background", "cat", "dog"],
        per_class_iou=[0.9, 0.5, None],
        miou=0.7,
        pixel_accuracy=0.93,
        mean_accuracy=0.8,
        protocol="dataset",
        images=4,
        confusion=np.array([[90, 5, 0], [5, 10, 0], [0, 0, 0]]),
    )
    html = evaluation_report(result, tmp_path / "e.html").read_text()
    assert html.count("data:image/png;base64,") == 2
    assert "<td>0.7</td>" in html and "cat" in html and "http://" not in html


def test_benchmark_cli_compares_engines_interleaved(tmp_path, tiny_checkpoint, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))  # the fast graph cache goes to ~/.cache/atrous
    path, *_ = tiny_checkpoint
    out = tmp_path / "b.json"
    args = ["benchmark", str(path), "--engine", "torch,fast", "--sizes", "65", "--runs", "2"]
    result = CliRunner().invoke(
        app, args + ["--warmup", "0", "--threads", "2", "--json-out", str(out)]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert [r["engine"] for r in data["records"]] == ["torch"] * 2 + ["onnxruntime"] * 2
    assert data["order"][:4] == [
        "tiny.pt:torch@65/t2:network",
        "tiny.pt:torch@65/t2:end_to_end",
        "tiny.pt:fast@65/t2:network",
        "tiny.pt:fast@65/t2:end_to_end",
    ]


def test_model_file_size_counts_openvino_weights(tmp_path):
    """An IR's weights live in the .bin beside the .xml; the size users see includes them."""
    from atrous.runtimes import model_file_mb

    (tmp_path / "m.xml").write_bytes(b"x" * 1000)
    (tmp_path / "m.bin").write_bytes(b"x" * 2_000_000)
    (tmp_path / "m.onnx").write_bytes(b"x" * 500_000)
    assert model_file_mb(tmp_path / "m.xml") == 2.001
    assert model_file_mb(tmp_path / "m.onnx") == 0.5
