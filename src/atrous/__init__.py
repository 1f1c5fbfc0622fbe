"""atrous: DeepLabV3 / DeepLabV3+ semantic segmentation, fast and accurate on CPUs."""

import sys

from atrous._threads import set_wait_policy

# before any atrous module imports torch: libgomp reads the policy once, when torch loads it
# (benchmarks/results/threads_under_load.md). Too late once torch is imported: left alone.
if "torch" not in sys.modules:
    set_wait_policy()

from atrous.errors import AtrousError, ConfigError, InputError, ModelError  # noqa: E402

__version__ = "0.1.0"

__all__ = ["AtrousError", "ConfigError", "InputError", "ModelError", "__version__"]
