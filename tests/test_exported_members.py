"""The public names: a name that appears or disappears must be a deliberate change."""

from __future__ import annotations

import fastapi_streamkit

EXPECTED = {
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
}


def test_all_is_exactly_the_public_api() -> None:
    assert set(fastapi_streamkit.__all__) == EXPECTED


def test_every_exported_name_is_importable() -> None:
    for name in fastapi_streamkit.__all__:
        assert getattr(fastapi_streamkit, name) is not None, name


def test_public_names_are_defined_by_the_package() -> None:
    for name in EXPECTED - {"__version__", "LastEventID"}:
        module = getattr(getattr(fastapi_streamkit, name), "__module__", "")
        assert module.startswith("fastapi_streamkit."), (name, module)
