"""Importers of foreign checkpoint layouts into atrous's own: torchvision state_dicts and TF
DeepLab model-zoo .tflite files (MobileNetV2, float or int8)."""

from atrous.models.foreign.tflite import TFLiteImport, from_tflite
from atrous.models.foreign.torchvision import (
    describe_layout,
    from_torchvision,
    is_torchvision,
    unwrap_state_dict,
)

__all__ = [
    "TFLiteImport",
    "describe_layout",
    "from_tflite",
    "from_torchvision",
    "is_torchvision",
    "unwrap_state_dict",
]
