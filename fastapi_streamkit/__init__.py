"""fastapi_streamkit: streaming, messaging, lifespan mounting and AsyncAPI for FastAPI."""

from .brokers import MemoryBroker as MemoryBroker
from .connection import Accept as Accept
from .connection import Request as Request
from .connection import StreamRoute as StreamRoute
from .connection import WebSocket as WebSocket
from .exceptions import StreamkitError as StreamkitError
from .lifespan import LifespanMount as LifespanMount
from .lifespan import mount as mount
from .messages import StreamMessage as StreamMessage

__version__ = "0.1.0"

__all__ = [
    "Accept",
    "LifespanMount",
    "MemoryBroker",
    "Request",
    "StreamMessage",
    "StreamRoute",
    "StreamkitError",
    "WebSocket",
    "__version__",
    "mount",
]
