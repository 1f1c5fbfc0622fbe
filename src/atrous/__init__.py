"""atrous: DeepLabV3 / DeepLabV3+ semantic segmentation, fast and accurate on CPUs."""

import os
import sys

# OpenMP threads that wait passively (sleep) instead of spinning: PyTorch's libgomp reads this
# once, when torch is first imported, so it is set before any atrous module imports torch. With
# spinning, a 2-core machine shared with one busy process ran the eager network 40-80x slower at
# 2 threads than at 1 (benchmarks/results/threads_under_load.md). A value the user set is kept.
if "torch" not in sys.modules:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from atrous.errors import AtrousError, ConfigError, InputError, ModelError  # noqa: E402

__version__ = "0.1.0"

__all__ = ["AtrousError", "ConfigError", "InputError", "ModelError", "__version__"]
