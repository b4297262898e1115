"""fastapi_streamkit: streaming, messaging, lifespan mounting and AsyncAPI for FastAPI."""

from typing import TYPE_CHECKING

from ._shutdown import request_shutdown as request_shutdown
from .asyncapi import get_asyncapi as get_asyncapi
from .brokers import MemoryBroker as MemoryBroker
from .connection import Accept as Accept
from .connection import Request as Request
from .connection import StreamRoute as StreamRoute
from .connection import WebSocket as WebSocket
from .exceptions import StreamkitError as StreamkitError
from .lifespan import LifespanMount as LifespanMount
from .lifespan import mount as mount
from .messages import StreamMessage as StreamMessage
from .responses import ASGIStreamingResponse as ASGIStreamingResponse
from .responses import JSONLines as JSONLines
from .responses import MsgPackStream as MsgPackStream
from .responses import Stream as Stream
from .router import StreamRouter as StreamRouter
from .sse import EventStream as EventStream
from .sse import LastEventID as LastEventID
from .sse import ServerSentEvent as ServerSentEvent

if TYPE_CHECKING:
    from .brokers.redis import RedisBroker as RedisBroker

__version__ = "0.1.0"

__all__ = [
    "ASGIStreamingResponse",
    "Accept",
    "EventStream",
    "JSONLines",
    "LastEventID",
    "LifespanMount",
    "MemoryBroker",
    "MsgPackStream",
    "RedisBroker",
    "Request",
    "ServerSentEvent",
    "Stream",
    "StreamMessage",
    "StreamRoute",
    "StreamRouter",
    "StreamkitError",
    "WebSocket",
    "__version__",
    "get_asyncapi",
    "mount",
    "request_shutdown",
]


def __getattr__(name: str) -> object:
    """Import `RedisBroker` on first use: it needs the optional ``[redis]`` extra."""
    if name == "RedisBroker":
        from .brokers.redis import RedisBroker

        return RedisBroker
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
