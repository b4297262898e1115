"""The package's exceptions, all under one root.

StreamkitError            root: catch this to catch anything the package raises
 +-- CodecError           a value could not be encoded or decoded
 |    +-- EncodeError     a value has no JSON / MessagePack form (also a TypeError)
 |    +-- DecodeError     bytes are not valid JSON / MessagePack (also a ValueError)
 +-- MissingDependency    an optional extra is not installed (also an ImportError)
 +-- SlowClientError      a send blocked longer than ``send_timeout`` (also a TimeoutError)
 +-- BrokerError          a broker could not do what was asked
 |    +-- BrokerNotRunning     publish/subscribe on a broker not started or closed (RuntimeError)
 |    +-- BrokerUnavailable    the broker's server cannot be reached (also a ConnectionError)
 +-- UnsupportedFastAPIWarning  FastAPI is outside the tested range (also a UserWarning)
 +-- UsageError           an API used in a way or state it does not support (RuntimeError)
 +-- LifespanError        a lifespan part (sub-app, hook, broker) did not start or stop
      +-- LifespanStartupError   a part failed to start; what started was shut down
      +-- LifespanShutdownError  parts failed to stop (also an ExceptionGroup of the errors)
      +-- LifespanTimeoutError   a sub-app outlived its start/shutdown timeout (TimeoutError)
      +-- SubAppLifespanError    a sub-app answered ``*.failed`` or broke the protocol
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "BrokerError",
    "BrokerNotRunning",
    "BrokerUnavailable",
    "CodecError",
    "DecodeError",
    "EncodeError",
    "MissingDependency",
    "SlowClientError",
    "StreamkitError",
    "UnsupportedFastAPIWarning",
    "UsageError",
    "LifespanError",
    "LifespanShutdownError",
    "LifespanStartupError",
    "LifespanTimeoutError",
    "SubAppLifespanError",
]


class StreamkitError(Exception):
    """Root of every exception raised by fastapi_streamkit."""


class CodecError(StreamkitError):
    """Raised when a value cannot be encoded or decoded."""


class EncodeError(CodecError, TypeError):
    """Raised when a value has no JSON or MessagePack form."""


class DecodeError(CodecError, ValueError):
    """Raised when bytes are not a valid JSON or MessagePack document."""


class MissingDependency(StreamkitError, ImportError):
    """Raised when a feature needs an optional extra that is not installed."""


class SlowClientError(StreamkitError, TimeoutError):
    """Raised when a client does not read fast enough: a send outlived ``send_timeout``."""


class UnsupportedFastAPIWarning(StreamkitError, UserWarning):
    """Warned at import when the installed FastAPI is outside the tested version range."""


class BrokerError(StreamkitError):
    """Raised when a broker cannot do what was asked."""


class BrokerNotRunning(BrokerError, RuntimeError):
    """Raised when publishing or subscribing on a broker that is not started, or closed."""


class BrokerUnavailable(BrokerError, ConnectionError):
    """Raised when the broker's server (Redis) cannot be reached; it reconnects by itself."""


class UsageError(StreamkitError, RuntimeError):
    """Raised when an API is used in a way or state it does not support (e.g. no session)."""


class LifespanError(StreamkitError):
    """Raised when a lifespan part (a sub-app, a hook, a broker) does not start or stop."""


class LifespanStartupError(LifespanError):
    """Raised when a part failed to start, after what had started was shut down."""

    def __init__(self, message: str, *, label: str) -> None:
        super().__init__(message)
        self.label = label


class LifespanShutdownError(LifespanError, ExceptionGroup[Exception]):
    """Raised when parts failed to stop; every part was still stopped. Holds each error."""

    def derive(self, excs: Sequence[Exception]) -> LifespanShutdownError:  # type: ignore[override]
        return LifespanShutdownError(self.message, excs)


class LifespanTimeoutError(LifespanError, TimeoutError):
    """Raised when a sub-app outlives its ``startup_timeout`` or ``shutdown_timeout``."""


class SubAppLifespanError(LifespanError):
    """Raised when a sub-app answers ``lifespan.*.failed`` or breaks the lifespan protocol."""
