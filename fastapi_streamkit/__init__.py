"""fastapi_streamkit: streaming, messaging, lifespan mounting and AsyncAPI for FastAPI."""

from .exceptions import StreamkitError as StreamkitError

__version__ = "0.1.0"

__all__ = [
    "StreamkitError",
    "__version__",
]
