"""ShuffleNetV2: published ImageNet multiply-adds, channel shuffle, dilation and width signature
(the registry-wide contract test covers features, BN folding, ONNX and the state_dict)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from atrous.cost import measure_cost
from atrous.models.backbones.shufflenet_v2 import STAGE_CHANNELS, ShuffleNetV2, channel_shuffle
from atrous.models.introspect import backbone_from_state_dict

# Published multiply-adds of the ImageNet classifiers at 224x224 (Ma et al. 2018, Table 5).
PUBLISHED_MMACS = {"x0_5": 41, "x1_0": 146, "x1_5": 299, "x2_0": 591}


class _Classifier(nn.Module):
    """The ImageNet trunk: the backbone (OS 32), conv5 (1x1), global pool, fc to 1000 classes.

    conv5 and fc exist only here (the segmentation backbone drops them); both are counted by
    ``measure_cost`` like every other convolution and linear layer.
    """

    def __init__(self, width: str) -> None:
        super().__init__()
        channels = STAGE_CHANNELS[width]
        self.backbone = ShuffleNetV2(width=width, output_stride=32)
        self.conv5 = nn.Conv2d(channels[3], channels[4], 1, bias=False)
        self.fc = nn.Linear(channels[4], 1000)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv5(self.backbone(x)[-1]).mean((2, 3)))


@pytest.mark.parametrize("width", sorted(PUBLISHED_MMACS))
def test_classifier_multiply_adds_match_the_paper_within_3_percent(width):
    macs = measure_cost(_Classifier(width), (224, 224)).macs / 1e6
    assert macs == pytest.approx(PUBLISHED_MMACS[width], rel=0.03), macs


def test_channel_shuffle_interleaves_the_two_halves():
    x = torch.arange(6.0).reshape(1, 6, 1, 1)
    assert channel_shuffle(x, 2).flatten().tolist() == [0, 3, 1, 4, 2, 5]


def test_output_stride_turns_the_last_strides_into_dilation():
    net = ShuffleNetV2(width="x0_5", output_stride=8)
    # stage3 and stage4 run at stride 8: first units keep the previous dilation (1 then 2)
    assert net.stage3[0].branch1[0].stride == (1, 1)
    assert net.stage3[0].branch1[0].dilation == (1, 1)
    assert net.stage3[1].branch2[3].dilation == (2, 2)
    assert net.stage4[0].branch2[3].dilation == (2, 2)
    assert net.stage4[1].branch2[3].dilation == (4, 4)
    assert ShuffleNetV2(width="x0_5", output_stride=32).stage4[0].branch1[0].stride == (2, 2)


@pytest.mark.parametrize("width", sorted(STAGE_CHANNELS))
def test_state_dict_signature_reads_the_width(width):
    with torch.device("meta"):
        state = ShuffleNetV2(width=width).state_dict()
    keyed = {f"backbone.{k}": v for k, v in state.items()}
    assert backbone_from_state_dict(keyed) == {"backbone": f"shufflenet_v2_{width}"}
