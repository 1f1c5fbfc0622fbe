"""HTTP service and web page: ``create_app(model)`` returns a FastAPI app that segments uploads."""

from atrous.serve.app import create_app
from atrous.serve.limits import ServeLimits

__all__ = ["create_app", "ServeLimits"]
