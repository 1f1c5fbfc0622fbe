"""The project's error types: every user-facing failure is one of these, with a one-line message.

The CLI prints ``str(error)`` and exits with code 2; anything else is a bug.
"""

from __future__ import annotations

__all__ = ["AtrousError", "ConfigError", "InputError", "ModelError"]


class AtrousError(Exception):
    """Base class for failures caused by the user's input rather than by atrous itself."""

    exit_code = 2


class InputError(AtrousError):
    """An image, mask, dataset or other input file is missing, corrupt or inconsistent."""


class ConfigError(AtrousError):
    """A configuration file or option is malformed, has an unknown key or a wrong type."""


class ModelError(AtrousError):
    """A model name, checkpoint or exported model cannot be loaded or does not fit."""
