"""`StreamMessage`: one broker message as a Starlette `Request`, and FastAPI DI to handle it.

A handler is written like a FastAPI endpoint. ``StreamMessage.get_session(dependant,
provider_factory)`` builds, once per handler, a `MessageSession` that runs the handler for one
message with FastAPI's semantics: body, ``Depends`` (sync, async, ``yield``), caching per
message, ``Header``, ``Path``, ``Security``, `RequestValidationError` for invalid input, and
``provider_factory().dependency_overrides`` looked up on every call.

How the message body becomes the handler's body parameters (FastAPI's rules, fixed here):

- an empty body is "no body": required body parameters fail with ``missing``;
- without a ``content-type`` header, or with a JSON one (``application/json``,
  ``application/*+json``), the body is decoded as JSON; invalid JSON fails validation with
  FastAPI's ``json_invalid`` error. Another ``content-type`` leaves the raw bytes;
- a single body parameter receives the whole body; several (or one declared
  ``Body(embed=True)``) receive the members of a JSON object named after them, as in FastAPI;
- as in FastAPI, a scalar parameter that is not in the topic pattern is a *query* parameter;
  a message has no query string (nor cookies), so a required one fails `get_session` with
  `UsageError`: declare it ``Annotated[int, Body()]`` to read the body, or ``Header()``.

When teardown runs (``yield`` dependencies):

- ``await session(message)`` returns the handler's result after every teardown ran;
- ``async with session.open(message) as result:`` returns it earlier: dependencies declared
  ``Depends(..., scope="function")`` are torn down before ``result`` is handed over, the
  others (FastAPI's default "request" scope for ``yield``) after the ``async with`` block, like
  FastAPI after it sent the response. An exception leaving the block is thrown into them.
  ``BackgroundTasks`` run at the end of a block left without an exception, before teardown.

How router.py should call this::

    session = StreamMessage.get_session(  # once per subscriber; UsageError: a bad handler
        _compat.build_dependant(handler, path="orders.{region}", dependencies=[...]),
        lambda: app,  # called per message: its dependency_overrides apply (None: no app)
    )
    message = StreamMessage(body, headers, {"region": "eu"}, topic="orders.eu")  # per message
    try:
        async with session.open(message) as result:
            await publish(result)  # teardown runs after the result is published
    except RequestValidationError as exc:  # invalid input: do not retry; exc.errors()
        ...
    except Exception as exc:  # the handler or one of its dependencies raised: retry
        ...

Deliberate divergences from FastAPI's HTTP path: JSON is assumed without a ``content-type``
(FastAPI's ``strict_content_type=False``); a body that is not UTF-8 JSON is a validation error
(FastAPI answers 400); header values are decoded as UTF-8, not latin-1, so any ``str`` value
round-trips; there are no query parameters or cookies. A dependency or handler raising
``HTTPException`` is just an exception here (nothing answers it).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import anyio
from starlette.datastructures import Headers
from starlette.requests import Request, empty_send
from starlette.types import Message

from . import _compat
from ._dispatch import MessageSession, ProviderFactory
from .codecs import json_encode

__all__ = ["MessageHeaders", "MessageSession", "StreamMessage"]


class MessageHeaders(Headers):
    """Case-insensitive message headers; values are decoded as UTF-8 (any ``str`` round-trips)."""

    def values(self) -> list[str]:  # type: ignore[override]
        """Every header value, in order."""
        return [value.decode() for _, value in self._list]

    def items(self) -> list[tuple[str, str]]:  # type: ignore[override]
        """Every (lower-cased name, value) pair, in order."""
        return [(key.decode("latin-1"), value.decode()) for key, value in self._list]

    def getlist(self, key: str) -> list[str]:
        """Every value of the header ``key``."""
        wanted = key.lower().encode("latin-1")
        return [value.decode() for name, value in self._list if name == wanted]

    def __getitem__(self, key: str) -> str:
        wanted = key.lower().encode("latin-1")
        for name, value in self._list:
            if name == wanted:
                return value.decode()
        raise KeyError(key)


_SCOPE: dict[str, Any] = {
    "type": "http",
    "http_version": "1.1",
    "method": "POST",
    "scheme": "http",
    "root_path": "",
    "query_string": b"",
    "client": None,
    "server": None,
    "asgi": {"version": "3.0", "spec_version": "2.4"},
}


def _body_bytes(body: object) -> bytes:
    if isinstance(body, bytes | bytearray | memoryview):
        return bytes(body)
    if isinstance(body, str):
        return body.encode()
    return json_encode(body)  # dict, list, pydantic model, dataclass... as the router publishes


class StreamMessage(Request):
    """A broker message as a Starlette `Request` over a minimal ASGI scope (POST ``/<topic>``).

    ``body``: bytes as they are, ``str`` as UTF-8, anything else (dict, list, pydantic model,
    dataclass) as JSON; ``path``: the path parameters, e.g. from the topic pattern.
    """

    def __init__(
        self,
        body: object = b"",
        headers: Mapping[str, str] | None = None,
        path: Mapping[str, str] | None = None,
        *,
        topic: str | None = None,
    ) -> None:
        raw = (
            [(k.lower().encode("latin-1"), v.encode()) for k, v in headers.items()]
            if headers
            else []
        )
        url_path = "/" + topic if topic else "/"
        scope = _SCOPE.copy()
        scope["path"] = url_path
        scope["raw_path"] = url_path.encode()
        scope["headers"] = raw
        scope["path_params"] = dict(path) if path else {}
        scope["topic"] = topic
        # What Request.__init__(scope, receive) sets, inlined: this runs once per message.
        # tests/test_messages.py fails if Starlette's Request starts setting other attributes.
        self.scope = scope
        self._receive = self._receive_body
        self._send = empty_send
        self._stream_consumed = False
        self._is_disconnected = False
        self._form = None
        self._body = body if type(body) is bytes else _body_bytes(body)
        self._body_sent = False

    @property
    def headers(self) -> Headers:
        """The message headers, case-insensitive (`MessageHeaders`)."""
        try:
            return self._headers
        except AttributeError:
            self._headers: Headers = MessageHeaders(raw=self.scope["headers"])
            return self._headers

    @property
    def topic(self) -> str | None:
        """The topic the message arrived on, as given."""
        topic: str | None = self.scope["topic"]
        return topic

    async def _receive_body(self) -> Message:
        if not self._body_sent:
            self._body_sent = True
            return {"type": "http.request", "body": self._body, "more_body": False}
        await anyio.sleep_forever()  # like a client that sent its whole body and waits
        raise AssertionError("unreachable")  # pragma: no cover

    @classmethod
    def get_session(
        cls, dependant: _compat.Dependant, provider_factory: ProviderFactory
    ) -> MessageSession:
        """Build once per handler: ``await session(message)`` runs it for one message."""
        return MessageSession(dependant, provider_factory)
