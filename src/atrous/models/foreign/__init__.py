"""Importers of foreign checkpoint layouts (torchvision today) into atrous's own."""

from atrous.models.foreign.torchvision import (
    describe_layout,
    from_torchvision,
    is_torchvision,
    unwrap_state_dict,
)

__all__ = ["describe_layout", "from_torchvision", "is_torchvision", "unwrap_state_dict"]
