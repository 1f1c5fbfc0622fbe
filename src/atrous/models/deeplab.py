"""DeepLabV3 / DeepLabV3+ assembly: backbone -> head -> [decoder] -> classifier -> upsample."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from atrous.config import ModelConfig
from atrous.errors import ModelError
from atrous.models.aspp import ASPP, ConvBNReLU, SeparableConvBNReLU
from atrous.models.backbones import Backbone
from atrous.models.decoder import Decoder, Upsample
from atrous.models.lraspp import LRASPP
from atrous.registry import get_backbone

__all__ = ["DeepLab", "build_model", "build_backbone", "set_output_stride"]


def build_backbone(config: ModelConfig) -> Backbone:
    """Instantiate the registered backbone named in ``config`` at its output stride, passing
    it the config fields it declares."""
    spec = get_backbone(config.backbone)
    own = {name: getattr(config, name) for name in spec.fields}
    return spec.factory(output_stride=config.output_stride, **own)


class DeepLab(nn.Module):
    """DeepLabV3 (Chen et al., 2017) and, with ``config.decoder``, DeepLabV3+ (Chen et al., 2018).

    ``forward`` returns logits at the input resolution (resized as ``config.upsampling`` says;
    bilinear, align_corners=False by default). In training mode with ``aux_loss`` it returns
    ``{"out": logits, "aux": aux_logits}`` (the aux logits always bilinear).
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.backbone = build_backbone(config)
        low, aux, out = self.backbone.feature_info
        channels = out.channels
        self.head: nn.Module
        if config.head == "none":
            self.head = nn.Identity()
        elif config.head == "lraspp":  # reads the aux features as its low input
            self.head = LRASPP(aux.channels, out.channels, config.num_classes, config.head_channels)
            channels = config.head_channels
        else:
            self.head = ASPP(
                out.channels,
                config.resolved_rates(),
                config.head_channels,
                config.separable_aspp,
                config.dropout,
                config.activation,
                config.depthwise_bn,
            )
            channels = config.head_channels
        if config.head_conv:  # torchvision DeepLabHead's / smp's 3x3 conv after ASPP
            self.head_conv = _head_conv(config, channels)
        self.decoder: Decoder | None = None
        if config.decoder:
            self.decoder = Decoder(
                channels,
                low.channels,
                config.low_level_channels,
                config.decoder_channels,
                config.separable_decoder,
                config.activation,
                config.upsampling,
                out.reduction // low.reduction,
                config.decoder_convs,
                config.depthwise_bn,
                config.align_corners,
            )
            channels = config.decoder_channels
        self.classifier = nn.Conv2d(channels, config.num_classes, 1)
        stride = low.reduction if config.decoder else out.reduction
        self.upsample = Upsample(
            config.upsampling, config.num_classes, stride, config.align_corners
        )
        self.aux_classifier: nn.Module | None = None
        if config.aux_loss:
            mid = config.aux_channels or max(aux.channels // 4, 32)
            self.aux_classifier = nn.Sequential(
                ConvBNReLU(aux.channels, mid, 3, activation=config.activation),
                nn.Dropout(0.1),
                nn.Conv2d(mid, config.num_classes, 1),
            )

    def forward(
        self, x: torch.Tensor, output_size: tuple[int, int] | None = None
    ) -> torch.Tensor | dict[str, torch.Tensor]:
        """Logits at ``output_size`` (default: the input's size), upsampled as configured."""
        size = output_size or x.shape[-2:]
        low, aux, out = self.backbone(x)
        y = self.upsample(self.logits(low, aux, out), size)
        if self.training and self.aux_classifier is not None:
            a = F.interpolate(
                self.aux_classifier(aux), size=size, mode="bilinear", align_corners=False
            )
            return {"out": y, "aux": a}
        return y

    def logits(
        self, low: torch.Tensor, aux: torch.Tensor, out: torch.Tensor, head: nn.Module | None = None
    ) -> torch.Tensor:
        """Logits at the network's resolution from the backbone's features; ``head`` replaces
        ``self.head`` (an equivalent deployment form of it)."""
        head = head or self.head
        if isinstance(head, LRASPP):
            return head(out, aux, self.classifier)
        y = head(out)
        if hasattr(self, "head_conv"):
            y = self.head_conv(y)
        if self.decoder is not None:
            y = self.decoder(y, low)
        return self.classifier(y)


def _head_conv(config: ModelConfig, channels: int) -> nn.Module:
    """The 3x3 conv + BN + ReLU after ASPP: dense (torchvision's DeepLabHead, smp's DeepLabV3)
    or, with a separable ASPP, separable (smp's DeepLabV3+)."""
    if config.separable_aspp:
        return SeparableConvBNReLU(channels, channels, 1, "relu", config.depthwise_bn)
    return ConvBNReLU(channels, channels, 3)


def build_model(config: ModelConfig | dict) -> DeepLab:
    """Build a DeepLab model from a ModelConfig (or a plain dict of its fields)."""
    if isinstance(config, dict):
        config = ModelConfig.model_validate(config)
    return DeepLab(config)


def set_output_stride(model: DeepLab, output_stride: int) -> DeepLab:
    """Switch ``model`` to ``output_stride`` in place, keeping its parameters: every
    convolution takes the stride, dilation and padding it has in a model built at that output
    stride (ASPP rates follow when they are derived from it).

    DeepLabV3's recipe: train at output stride 16, fine-tune and evaluate at 8, where the
    last stage sees four times the positions. The parameter objects stay the same, so an
    optimizer holding them carries on. A transposed upsampling's kernel is sized for one
    output stride, so such a model is refused.
    """
    if model.config.upsampling == "transposed":
        raise ModelError("set_output_stride: a transposed upsampling fits one output stride only")
    config = ModelConfig.model_validate(
        {**model.config.model_dump(), "output_stride": output_stride}
    )
    template = DeepLab(config)
    built = dict(template.named_modules())
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            ref = built[name]
            module.stride, module.dilation, module.padding = ref.stride, ref.dilation, ref.padding
    model.backbone.feature_info = template.backbone.feature_info
    model.config = config
    return model
