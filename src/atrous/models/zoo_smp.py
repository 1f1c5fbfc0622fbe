"""Zoo entries of segmentation_models_pytorch (smp) 0.6's DeepLabV3 and DeepLabV3+, at smp's
defaults, architecture for architecture (parameter counts equal smp's, tested against smp).

smp's DeepLabV3: encoder at output stride 8, ASPP rates (12, 24, 36) with dropout 0.5, a 3x3
conv + BN + ReLU after ASPP, a 1x1 classifier and x8 bilinear upsampling (align_corners=True).
DeepLabV3+: output stride 16, separable ASPP and a separable 3x3 conv after it (depthwise ->
pointwise -> BN), x4 upsampling to the stride-4 features, 48-channel reduction, one separable
3x3 refining conv, x4 upsampling. Its encoders dilate every unit of a dilated stage
(``uniform_dilation``) and its MobileNetV2 keeps torchvision's 1280-channel last conv. smp's
default ``classes`` is 1; the entries use VOC's 21 like the rest of the zoo (``num_classes=1``
as an override gives smp's own default). smp publishes ImageNet encoder weights only, so no
entry has published weights; state_dicts saved by smp load through
``atrous.models.foreign.smp``. Inputs must be multiples of the output stride (smp refuses
others), hence the cards' ``pad_multiple``.
"""

from __future__ import annotations

from atrous.config import ModelConfig, Preprocessing
from atrous.models.zoo_entry import ZooEntry

__all__ = ["SMP_ENTRIES", "SMP_SOURCE"]

SMP_SOURCE = "segmentation_models_pytorch 0.6"
_V3 = {
    "output_stride": 8,
    "atrous_rates": (12, 24, 36),
    "dropout": 0.5,
    "head_conv": True,
    "uniform_dilation": True,
    "align_corners": True,
}
_V3PLUS = {
    **_V3,
    "output_stride": 16,
    "separable_aspp": True,
    "depthwise_bn": False,
    "decoder": True,
    "separable_decoder": True,
    "decoder_convs": 1,
}
_MNV2 = {"last_channels": 1280}
# zoo name -> (smp class, encoder, params, multiply-adds at 512 x 512)
_MODELS = {
    "deeplabv3_resnet50_smp": ("DeepLabV3", "resnet50", 39_638_869, 163_579_428_864),
    "deeplabv3_resnet101_smp": ("DeepLabV3", "resnet101", 58_630_997, 241_157_275_648),
    "deeplabv3_mobilenet_v2_smp": ("DeepLabV3", "mobilenet_v2", 12_653_077, 50_709_528_576),
    "deeplabv3plus_resnet50_smp": ("DeepLabV3Plus", "resnet50", 26_682_725, 36_645_109_760),
    "deeplabv3plus_resnet101_smp": ("DeepLabV3Plus", "resnet101", 45_674_853, 56_039_571_456),
    "deeplabv3plus_mobilenet_v2_smp": ("DeepLabV3Plus", "mobilenet_v2", 4_383_653, 6_009_454_592),
}


def _entry(name: str, arch: str, encoder: str, params: int, macs: int) -> ZooEntry:
    """The zoo entry of smp's ``arch`` on ``encoder`` at smp's defaults."""
    fields = _V3PLUS if arch == "DeepLabV3Plus" else _V3
    config = ModelConfig(backbone=encoder, **fields, **(_MNV2 if encoder == "mobilenet_v2" else {}))
    return ZooEntry(
        name=name,
        config=config,
        input_size=(512, 512),
        dataset="voc",
        source=f"{SMP_SOURCE} {arch}(encoder_name='{encoder}')",
        params=params,
        macs=macs,
        published={"note": "smp publishes ImageNet encoder weights only"},
        preprocessing=Preprocessing(resize="none", pad_multiple=config.output_stride),
    )


SMP_ENTRIES = tuple(_entry(name, *spec) for name, spec in _MODELS.items())
