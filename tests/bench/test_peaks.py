"""The int8 roof: measured on each int8 runtime installed, OpenVINO's integer kernels included."""

from __future__ import annotations

import pytest

from atrous.bench import peaks


def test_openvino_int8_peak_times_an_integer_matrix_product():
    # the roof must be the rate of an int8 kernel: a product the plugin left in float would
    # set the int8 floor at the fp32 rate
    pytest.importorskip("openvino")
    request, feed, compiled = peaks._openvino_int8(1, 64)
    runtime = compiled.get_runtime_model()
    products = {
        op.get_rt_info()["layerType"].astype(str): op.get_rt_info()["runtimePrecision"].astype(str)
        for op in runtime.get_ordered_ops()
        if "MatMul" in op.get_friendly_name() or "FullyConnected" in
        op.get_rt_info()["layerType"].astype(str)
    }  # fmt: skip
    assert products and all(p.lower() in ("i8", "u8") for p in products.values()), products
    assert request.infer({0: feed})[0].shape == (64, 64)


def test_the_int8_roof_is_the_best_of_the_runtimes_installed(monkeypatch):
    monkeypatch.setattr(peaks, "_fp32_gmacs", lambda threads, n: 10.0)
    monkeypatch.setattr(peaks, "_bandwidth_gbs", lambda threads: 5.0)
    monkeypatch.setattr(peaks, "_int8_gmacs", lambda threads, n: 90.0 + n / 1024)
    monkeypatch.setattr(peaks, "_openvino_int8_gmacs", lambda threads, n: 700.0 + n / 1024)
    assert peaks.measure_peaks(2, sizes=(512, 1024)).int8_gmacs == 701.0
    monkeypatch.setattr(peaks, "_openvino_int8_gmacs", lambda threads, n: None)  # not installed
    assert peaks.measure_peaks(2, sizes=(512, 1024)).int8_gmacs == 91.0
    monkeypatch.setattr(peaks, "_int8_gmacs", lambda threads, n: None)
    assert peaks.measure_peaks(2, sizes=(512, 1024)).int8_gmacs is None
