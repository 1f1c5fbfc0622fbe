"""MobileNetV3's trunks against the published ImageNet multiply-adds, and the torchvision-identical
zoo entries against torchvision's published parameter counts and GFLOPS (multiply-adds)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from atrous.cost import count_parameters, measure_cost
from atrous.models import get_model
from atrous.models.backbones.mobilenet_v3 import mobilenet_v3_large, mobilenet_v3_small
from atrous.models.zoo import get_entry

# (builder, published M multiply-adds at 224 with the classifier, last conv, hidden, classes)
TRUNKS = [(mobilenet_v3_large, 219, 960, 1280), (mobilenet_v3_small, 56, 576, 1024)]
# torchvision's published parameters (aux heads included) and GFLOPS at 520
PUBLISHED = {
    "deeplabv3_resnet50_tv": (42_004_074, 178.72),
    "deeplabv3_resnet101_tv": (60_996_202, 258.74),
    "deeplabv3_mobilenet_v3_large_tv": (11_029_328, 10.45),
    "lraspp_mobilenet_v3_large_tv": (3_221_538, 2.09),
}


@pytest.mark.parametrize(("builder", "published", "last", "hidden"), TRUNKS)
def test_trunk_multiply_adds_match_the_published_figure(builder, published, last, hidden):
    cost = measure_cost(builder(output_stride=32), (224, 224))
    classifier = last * hidden + hidden * 1000  # torchvision's two Linear layers at 1x1
    total = (cost.macs + classifier) / 1e6
    # measured: Large 216.6 M (-1.1%), Small 56.5 M (+0.9%)
    assert abs(total - published) / published < 0.03, total


@pytest.mark.parametrize("name", PUBLISHED)
def test_parameters_equal_torchvision_exactly(name):
    with torch.device("meta"):
        model = get_model(name)
    assert count_parameters(model) == PUBLISHED[name][0] == get_entry(name).params


class _WithAux(nn.Module):
    """The eval graph plus the aux head: what torchvision's published GFLOPS count."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        low, aux, out = self.model.backbone(x)
        return self.model.logits(low, aux, out), self.model.aux_classifier(aux)


@pytest.mark.parametrize(
    "name",
    [
        "deeplabv3_mobilenet_v3_large_tv",
        "lraspp_mobilenet_v3_large_tv",
        pytest.param("deeplabv3_resnet50_tv", marks=pytest.mark.slow),
        pytest.param("deeplabv3_resnet101_tv", marks=pytest.mark.slow),
    ],
)
def test_multiply_adds_match_torchvision_gflops(name):
    model = get_model(name)
    graph = _WithAux(model) if model.aux_classifier is not None else model
    macs = measure_cost(graph, (520, 520)).macs
    published = PUBLISHED[name][1] * 1e9
    assert abs(macs - published) / published < 0.03, macs / 1e9


def test_stride8_aux_tap_is_torchvision_c2():
    large = mobilenet_v3_large(aux_stride=8)
    small = mobilenet_v3_small(aux_stride=8)
    assert [(f.channels, f.reduction) for f in large.feature_info] == [(24, 4), (40, 8), (960, 16)]
    assert [(f.channels, f.reduction) for f in small.feature_info] == [(16, 4), (24, 8), (576, 16)]
    assert (large._aux_index, small._aux_index) == (4, 2)  # torchvision's stage_indices[-4]
