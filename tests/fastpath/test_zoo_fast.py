"""Every zoo entry exports to the fast path, fp32 (ONNX Runtime) and int8 (OpenVINO IR), with no
per-model case: the fp32 graph's masks agree with the eager PyTorch Segmenter's, the int8 graph
builds and runs. The default suite checks one cheap entry (LR-ASPP on MobileNetV3; MobileNetV2's
fast path is tested in tests/test_fastpath.py); the whole zoo runs with ``-m slow``."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from atrous.export.parity import diversify, sample_batch, synthetic_image
from atrous.fastpath import export_fast_int8, export_fast_onnx
from atrous.models import default_card, get_model, list_models
from atrous.runtimes import TorchEngine
from atrous.segmenter import Segmenter
from atrous.sources import load_engine

SIZE = 96  # small, a multiple of 16 (and 8): no resize, no padding to crop
CHEAP = ("lraspp_mobilenet_v3_large_tv",)
# the big entries (ResNet-101, Xception-71) take minutes each on a busy 2-core machine
SLOW = (pytest.mark.slow, pytest.mark.timeout(3600))
ZOO = [name if name in CHEAP else pytest.param(name, marks=SLOW) for name in list_models()]


def small_net(name: str):
    """The zoo model with diversified random weights, its card taking images as they are.

    The classifier bias is centred on an image of the test's size: a deep network's class
    offsets at 96 px differ from the 129 px ``diversify`` centres on (Xception-71 then gave
    one class everywhere)."""
    card = default_card(name)
    pre = card.preprocessing.model_copy(update={"resize": "none", "size": None})
    card = card.model_copy(update={"preprocessing": pre})
    model = diversify(get_model(name).eval(), card)
    with torch.no_grad():
        batch = torch.from_numpy(sample_batch(card, (SIZE, SIZE), seed=99))
        model.classifier.bias -= model(batch).mean((0, 2, 3))
    return model, card


def masks(segmenter: Segmenter, images: list[np.ndarray]) -> np.ndarray:
    return np.stack([segmenter.predict(image).mask for image in images])


@pytest.mark.parametrize("name", ZOO)
def test_zoo_entry_exports_to_the_fast_path(name, tmp_path):
    model, card = small_net(name)
    images = [synthetic_image(SIZE, SIZE, seed=i) for i in range(6)]
    eager = masks(Segmenter(TorchEngine(model, 2), card), images[4:])
    assert len(np.unique(eager)) >= 3, name  # diversified: agreement is not trivial
    fp32_path = export_fast_onnx(model, card, tmp_path / "fast.onnx", label_stride=1)
    fp32 = masks(Segmenter(*load_engine(fp32_path, "onnxruntime", 2)), images[4:])
    assert fp32.shape == eager.shape
    assert (fp32 == eager).mean() >= 0.96, (name, (fp32 == eager).mean())
    int8_path = export_fast_int8(model, card, tmp_path / "fast.xml", images[:4], num=4)
    int8 = masks(Segmenter(*load_engine(int8_path, "openvino", 2)), images[4:])
    assert int8.shape == eager.shape and int8.dtype == np.uint8
    # random diversified weights have near-zero logit margins, so int8 flips many pixels; a
    # wrong layout, channel order or broken graph scores near chance (1/classes)
    assert (int8 == eager).mean() > 3 / card.num_classes, (name, (int8 == eager).mean())
