"""DeepLab models: backbones, heads, assembly and the zoo of published configurations."""

from atrous.models.deeplab import DeepLab, build_model, set_output_stride
from atrous.models.zoo import ZooEntry, default_card, get_entry, get_model, list_models

__all__ = [
    "DeepLab",
    "ZooEntry",
    "build_model",
    "default_card",
    "get_entry",
    "get_model",
    "list_models",
    "set_output_stride",
]
