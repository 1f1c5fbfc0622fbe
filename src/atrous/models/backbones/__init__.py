"""Backbones: each returns ``[low, aux, out]`` feature maps described by ``feature_info``."""

from atrous.models.backbones._base import Backbone, FeatureInfo, zero_init_residuals
from atrous.models.backbones.mobilenet_v2 import MobileNetV2
from atrous.models.backbones.resnet import ResNet
from atrous.models.backbones.shufflenet_v2 import ShuffleNetV2
from atrous.models.backbones.xception import Xception

__all__ = [
    "Backbone",
    "FeatureInfo",
    "MobileNetV2",
    "ResNet",
    "ShuffleNetV2",
    "Xception",
    "zero_init_residuals",
]
