"""fastapi_streamkit: streaming, messaging, lifespan mounting and AsyncAPI for FastAPI."""

from .exceptions import StreamkitError as StreamkitError
from .messages import StreamMessage as StreamMessage

__version__ = "0.1.0"

__all__ = [
    "StreamMessage",
    "StreamkitError",
    "__version__",
]
