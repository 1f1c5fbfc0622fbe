"""The profiler's parts: runtime overhead closes the gap to the network's wall time, and a
runtime without a per-op profiler gets one line naming the file."""

from __future__ import annotations

import numpy as np
import pytest

from atrous.bench._profile_blocks import OpTime, with_overhead
from atrous.bench.profile import profile_segmenter
from atrous.errors import InputError
from atrous.models import default_card
from atrous.segmenter import Segmenter

NAME = "deeplabv3_mnv2_dm05_os16"


def test_overhead_is_the_network_time_the_kernels_do_not_account_for():
    ops = [OpTime("conv", "Conv", "head", 1.25), OpTime("add", "Add", "head", 1.75)]
    padded = with_overhead(ops, {"network": 5.0})
    assert padded[:2] == ops
    assert padded[2] == OpTime("session overhead", "overhead", "runtime overhead", 2.0)
    assert with_overhead(ops, {"network": 2.5}) == ops  # kernels over wall time: nothing added


class _Engine:
    """An engine with no profiler of its own (a stand-in for LiteRT or a foreign runtime)."""

    def __init__(self, name: str) -> None:
        self.name, self.threads = name, 1

    def run(self, batch: np.ndarray) -> np.ndarray:
        return np.zeros((batch.shape[0], 4, *batch.shape[2:]), np.float32)


@pytest.mark.parametrize(
    ("engine", "model_file", "message"),
    [
        ("litert", "m.tflite", r"^m\.tflite: LiteRT files have no per-op profiler here; "),
        ("mystery", None, r"^cannot profile engine 'mystery' without its model file$"),
    ],
)
def test_a_runtime_without_a_profiler_is_refused_in_one_line(engine, model_file, message):
    card = default_card(NAME, num_classes=4)
    segmenter = Segmenter(_Engine(engine), card)
    with pytest.raises(InputError, match=message) as err:
        profile_segmenter(segmenter, model_file=model_file, size=33, runs=1, warmup=0)
    assert "\n" not in str(err.value)
