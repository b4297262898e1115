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
  ``Body(embed=True)``) receive the members of a JSON object named after them, as in FastAPI.

When teardown runs (``yield`` dependencies):

- ``await session(message)`` returns the handler's result after every teardown ran;
- ``async with session.open(message) as result:`` returns it earlier: dependencies declared
  ``Depends(..., scope="function")`` are torn down before ``result`` is handed over, the
  others (FastAPI's default "request" scope for ``yield``) after the ``async with`` block, like
  FastAPI after it sent the response. An exception leaving the block is thrown into them.
  ``BackgroundTasks`` run at the end of a block left without an exception, before teardown.

How router.py should call this::

    session = StreamMessage.get_session(
        _compat.build_dependant(handler, path="orders.{region}"), lambda: app
    )  # once per subscriber
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
round-trips; there are no query parameters or cookies.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from contextlib import AsyncExitStack
from types import TracebackType
from typing import Any

import anyio
from fastapi.exceptions import FastAPIError, RequestValidationError
from starlette.applications import Starlette
from starlette.background import BackgroundTasks
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.types import Message

from . import _compat
from ._plan import Plan, compile_plan, solve_plan

__all__ = ["MessageSession", "StreamMessage"]

ProviderFactory = Callable[[], Any]
_NO_RESULT: Any = object()


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


class StreamMessage(Request):
    """A broker message as a Starlette `Request` over a minimal ASGI scope (POST ``/<topic>``)."""

    def __init__(
        self,
        body: bytes | str = b"",
        headers: Mapping[str, str] | None = None,
        path: Mapping[str, str] | None = None,
        *,
        topic: str | None = None,
    ) -> None:
        raw = [(k.lower().encode("latin-1"), v.encode()) for k, v in (headers or {}).items()]
        url_path = "/" + (topic or "")
        super().__init__(
            {
                "type": "http",
                "asgi": {"version": "3.0", "spec_version": "2.4"},
                "http_version": "1.1",
                "method": "POST",
                "scheme": "http",
                "path": url_path,
                "raw_path": url_path.encode(),
                "root_path": "",
                "query_string": b"",
                "headers": raw,
                "client": None,
                "server": None,
                "path_params": dict(path) if path else {},
                "topic": topic,
            },
            self._receive_body,
        )
        self._body = body.encode() if isinstance(body, str) else body
        self._headers = MessageHeaders(raw=raw)
        self._body_sent = False

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


def _json_error(exc: Exception, pos: int | str) -> RequestValidationError:
    msg = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
    error = {
        "type": "json_invalid",
        "loc": ("body", pos),
        "msg": "JSON decode error",
        "input": {},
        "ctx": {"error": msg},
    }
    return RequestValidationError([error], body=getattr(exc, "doc", None))


def _is_json(content_type: str) -> bool:
    media = content_type.partition(";")[0].strip().lower()
    maintype, _, subtype = media.partition("/")
    return maintype == "application" and (subtype == "json" or subtype.endswith("+json"))


def read_body(message: StreamMessage) -> Any:
    """The body value FastAPI's solver expects: decoded JSON, raw bytes, or `Undefined`."""
    body = message._body
    if not body:
        return _compat.Undefined
    content_type = message._headers.get("content-type")
    if content_type is not None and not _is_json(content_type):
        return body
    try:
        return json.loads(body)
    except json.JSONDecodeError as exc:
        raise _json_error(exc, exc.pos) from exc
    except UnicodeDecodeError as exc:
        raise _json_error(exc, exc.start) from exc


class MessageSession:
    """FastAPI dependency injection for one handler; call it once per message."""

    __slots__ = ("_dependant", "_embed", "_has_body", "_plan", "_provider_factory")

    def __init__(self, dependant: _compat.Dependant, provider_factory: ProviderFactory) -> None:
        if dependant.call is None:
            raise TypeError(
                "get_session() expected a Dependant of a handler (dependant.call is None); "
                "build it with fastapi_streamkit._compat.build_dependant(handler, path=...)"
            )
        self._dependant = dependant
        self._provider_factory = provider_factory
        self._embed = _compat.embed_body_fields(dependant)
        self._plan: Plan = compile_plan(dependant, embed_body_fields=self._embed)
        self._has_body = self._plan.has_body

    @property
    def dependant(self) -> _compat.Dependant:
        """The handler's FastAPI `Dependant`."""
        return self._dependant

    async def __call__(self, message: StreamMessage) -> Any:
        """Run the handler for ``message``; every teardown has run when this returns."""
        async with _MessageRun(self, message) as result:
            return result

    def open(self, message: StreamMessage) -> _MessageRun:
        """``async with session.open(message) as result``: teardown after the block."""
        return _MessageRun(self, message)


class _MessageRun:
    """One message through one session: solve, call, then teardown on exit."""

    __slots__ = ("_background", "_message", "_request_stack", "_session")

    def __init__(self, session: MessageSession, message: StreamMessage) -> None:
        self._session = session
        self._message = message
        self._request_stack = AsyncExitStack()
        self._background: BackgroundTasks | None = None

    async def __aenter__(self) -> Any:
        session = self._session
        message = self._message
        provider = session._provider_factory()
        if isinstance(provider, Starlette):
            message.scope.setdefault("app", provider)
        body = read_body(message) if session._has_body else _compat.Undefined
        stack = self._request_stack
        await stack.__aenter__()
        try:
            result = await self._run(provider, body)
        except BaseException as exc:
            if not await stack.__aexit__(type(exc), exc, exc.__traceback__):
                raise
            raise _swallowed(exc) from exc
        return result

    async def _run(self, provider: Any, body: Any) -> Any:
        session = self._session
        message = self._message
        overrides = getattr(provider, "dependency_overrides", None)
        function_stack = AsyncExitStack()
        message.scope["fastapi_inner_astack"] = self._request_stack
        message.scope["fastapi_function_astack"] = function_stack
        result = _NO_RESULT
        async with function_stack:
            if overrides and session._plan.overridden(overrides):
                solved = await _compat.solve_dependencies(
                    request=message,
                    dependant=session._dependant,
                    body=body,
                    dependency_overrides_provider=provider,
                    async_exit_stack=self._request_stack,
                    embed_body_fields=session._embed,
                )
                values, errors = solved.values, solved.errors
                self._background = solved.background_tasks
            else:
                values, errors, self._background = await solve_plan(session._plan, message, body)
            if errors:
                raise RequestValidationError(errors, body=body)
            call = session._plan.call
            if session._plan.is_coroutine:
                result = await call(**values)
            else:
                result = await run_in_threadpool(call, **values)
        if result is _NO_RESULT:  # a dependency swallowed the handler's exception
            raise _swallowed(None)
        return result

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        stack = self._request_stack
        if exc is None and self._background is not None:
            try:
                await self._background()
            except BaseException as bg_exc:
                await stack.__aexit__(type(bg_exc), bg_exc, bg_exc.__traceback__)
                raise
        await stack.__aexit__(exc_type, exc, tb)
        return False


def _swallowed(exc: BaseException | None) -> FastAPIError:
    return FastAPIError(
        "The handler produced no result: a dependency with yield caught an exception "
        f"({exc!r}) without raising it again. Re-raise it in the dependency's except block."
    )
