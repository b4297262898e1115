"""fastapi_streamkit: streaming, messaging, lifespan mounting and AsyncAPI for FastAPI."""

from .exceptions import StreamkitError as StreamkitError
from .lifespan import LifespanMount as LifespanMount
from .lifespan import mount as mount
from .messages import StreamMessage as StreamMessage

__version__ = "0.1.0"

__all__ = [
    "LifespanMount",
    "StreamMessage",
    "StreamkitError",
    "__version__",
    "mount",
]
