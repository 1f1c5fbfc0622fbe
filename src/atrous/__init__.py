"""atrous: DeepLabV3 / DeepLabV3+ semantic segmentation, fast and accurate on CPUs."""

from atrous.errors import AtrousError, ConfigError, InputError, ModelError

__version__ = "0.1.0"

__all__ = ["AtrousError", "ConfigError", "InputError", "ModelError", "__version__"]
