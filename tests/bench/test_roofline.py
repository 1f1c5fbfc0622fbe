"""Memory-access cost: bytes per layer counted by hand, intensity, the bound against given peaks,
the peaks cache, op-to-layer matching of runtime node names, and the CLI's table and plot."""

from __future__ import annotations

import json
from dataclasses import asdict

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from atrous.bench._profile_blocks import OpTime
from atrous.bench.peaks import Peaks, load_peaks, peaks_path
from atrous.bench.roofline import Layer, layer_traffic, module_path, roofline, times_from_ops
from atrous.cli import app

FAKE = Peaks("test CPU", 2, fp32_gmacs=10.0, bandwidth_gbs=5.0, int8_gmacs=40.0)


class _ConvThenResize(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False)

    def forward(self, x):
        y = self.dw(self.conv(x))
        return nn.functional.interpolate(y, scale_factor=2.0, mode="bilinear")


@pytest.mark.parametrize(("precision", "elem"), [("fp32", 4), ("int8", 1)])
def test_conv_bytes_and_macs_match_a_hand_count(precision, elem):
    layers = {x.name: x for x in layer_traffic(_ConvThenResize(), (16, 12), precision)}
    conv = layers["conv"]
    # input 3x16x12, weight 8x3x3x3, bias 8 (int32 when quantized: 4 B), output 8x16x12
    assert conv.read_bytes == 3 * 16 * 12 * elem + 8 * 27 * elem + 8 * 4
    assert conv.write_bytes == 8 * 16 * 12 * elem
    assert conv.macs == 8 * 16 * 12 * 27
    assert conv.intensity == conv.macs / (conv.read_bytes + conv.write_bytes)
    dw = layers["dw"]
    assert dw.kind == "depthwise conv" and dw.macs == 8 * 16 * 12 * 9
    assert dw.read_bytes == (8 * 16 * 12 + 8 * 9) * elem
    resize = layers["model.resize"]
    assert resize.kind == "resize" and resize.macs == 0
    assert (resize.read_bytes, resize.write_bytes) == (8 * 16 * 12 * elem, 8 * 32 * 24 * elem)


def test_bound_and_floor_follow_the_given_peaks():
    # balance = 10 GMAC/s / 5 GB/s = 2 MAC/B (fp32), 8 MAC/B (int8)
    low = Layer("low", "depthwise conv", macs=1_000_000, read_bytes=600_000, write_bytes=400_000)
    high = Layer("high", "conv 1x1", macs=3_000_000, read_bytes=500_000, write_bytes=500_000)
    result = roofline([low, high], FAKE, "fp32")
    assert (low.bound, high.bound) == ("memory", "compute")
    assert low.floor_ms == pytest.approx(1e6 / 5e9 * 1e3)  # bytes / bandwidth
    assert high.floor_ms == pytest.approx(3e6 / 10e9 * 1e3)  # MACs / peak
    assert result.bandwidth_bound() == [low]
    high.ms = 0.6
    assert high.efficiency == pytest.approx(0.5)
    roofline([low, high], FAKE, "int8")  # int8's roof is higher: 3 MAC/B is now below balance
    assert high.bound == "memory" and high.floor_ms == pytest.approx(1e6 / 5e9 * 1e3)


def test_peaks_are_cached_and_measured_again_on_request(tmp_path):
    calls = []

    def fake(threads: int) -> Peaks:
        calls.append(threads)
        return Peaks("test CPU", threads, 1.0 + len(calls), 2.0)

    first = load_peaks(3, measure=fake, root=tmp_path)
    assert load_peaks(3, measure=fake, root=tmp_path) == first and calls == [3]
    again = load_peaks(3, remeasure=True, measure=fake, root=tmp_path)
    assert calls == [3, 3] and again.fp32_gmacs == 3.0
    assert load_peaks(3, measure=fake, root=tmp_path) == again  # the re-measure was cached
    peaks_path(3, root=tmp_path).write_text("{not json")
    load_peaks(3, measure=fake, root=tmp_path)
    assert calls == [3, 3, 3]  # a damaged entry is measured again


def test_runtime_node_names_land_on_their_layers():
    assert module_path("/backbone/features.1/conv/conv.0/conv.0.0/Conv") == [
        "backbone", "features.1", "conv", "0", "0", "Conv"
    ]  # fmt: skip
    names = ["backbone.features.1.conv.0.0", "backbone.features.1.conv.1", "head.project.0"]
    layers = [Layer(n, "conv 1x1", 1, 1, 1) for n in names]
    layers.append(Layer("upsample.resize", "resize", 0, 1, 1))
    ops = [
        OpTime("/backbone/features.1/conv/conv.0/conv.0.2/Clip_output_0_nchwc", "Conv", "b", 1.0),
        OpTime("/backbone/features.1/conv/conv.1/Conv/WithoutBiases", "Convolution", "b", 2.0),
        OpTime("/head/project/project.2/Relu_output_0_nchwc", "Conv", "head", 4.0),
        OpTime("logits", "Interpolate", "upsample", 8.0),
        OpTime("/head/Concat", "Concat", "head", 16.0),
    ]
    spare = times_from_ops(layers, ops)
    assert [x.ms for x in layers] == [1.0, 2.0, 4.0, 8.0] and spare == 16.0


def test_cli_profile_prints_the_roofline_in_80_columns_and_plots_it(tmp_path, monkeypatch):
    monkeypatch.setenv("ATROUS_CACHE", str(tmp_path / "cache"))
    path = peaks_path(2)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(asdict(FAKE)))  # cached: no measurement in the test
    torch.manual_seed(0)
    args = ["profile", "deeplabv3_mnv2_dm05_os16", "--engine", "torch", "--size", "65"]
    result = CliRunner().invoke(app, [*args, "--runs", "1", "--threads", "2",
                                      "--report", str(tmp_path / "rep")])  # fmt: skip
    assert result.exit_code == 0, result.output
    table = result.output[result.output.index("layers at fp32") :].splitlines()
    header = table[1].split()
    assert header == ["layer", "MMAC", "MB", "MAC/B", "bound", "ms", "floor", "eff"]
    assert all(len(line) <= 80 for line in table), max(table, key=len)
    rows = {line.split()[0]: line.split() for line in table[3:] if len(line.split()) == 8}
    assert rows["classifier"][4] in ("mem", "cpu") and "upsample.resize" in rows
    assert "bandwidth-bound" in result.output and "--measure-peaks" in result.output
    assert (tmp_path / "rep" / "roofline.png").stat().st_size > 10_000
    assert "roofline (fp32)" in (tmp_path / "rep" / "profile.html").read_text()


def test_an_unknown_precision_is_one_line_before_any_work():
    from atrous.errors import ConfigError

    result = CliRunner().invoke(app, ["profile", "no-such-model", "--precision", "fp16"])
    assert isinstance(result.exception, ConfigError)
    assert str(result.exception) == "--precision fp16: expected fp32 or int8"


class _TwoResizes(nn.Module):
    def forward(self, x):
        y = nn.functional.interpolate(x, scale_factor=2.0, mode="nearest")
        return nn.functional.interpolate(y, scale_factor=0.5, mode="nearest")


def test_each_resize_call_is_its_own_layer():
    layers = layer_traffic(_TwoResizes(), (8, 8))
    assert [x.name for x in layers] == ["model.resize", "model.resize#2"]
    assert [x.read_bytes for x in layers] == [3 * 64 * 4, 3 * 256 * 4]
