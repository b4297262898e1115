"""`MessageSession`: run one handler for one message with FastAPI's dependency injection.

The compiled plan (`_plan.py`) solves the handler's dependencies; FastAPI's own
``solve_dependencies`` does whenever ``dependency_overrides`` replace a dependency of the graph.
Exit stacks (for ``yield`` dependencies) are only opened when the graph or the solver needs
them, so a handler without ``yield`` dependencies costs a solve and a call per message.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import AsyncExitStack
from functools import lru_cache
from types import TracebackType
from typing import Any

from fastapi.exceptions import FastAPIError, RequestValidationError
from pydantic_core import from_json
from starlette.applications import Starlette
from starlette.background import BackgroundTasks
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from . import _compat
from ._plan import Plan, compile_plan
from ._solve import Context, solve

__all__ = ["MessageSession", "ProviderFactory", "read_body"]

ProviderFactory = Callable[[], Any]
"""Returns the object whose ``dependency_overrides`` apply (a FastAPI app), or None."""

_UNSET: Any = object()


def _json_error(exc: Exception, pos: int | str) -> RequestValidationError:
    error = {
        "type": "json_invalid",
        "loc": ("body", pos),
        "msg": "JSON decode error",
        "input": {},
        "ctx": {"error": exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)},
    }
    return RequestValidationError([error], body=getattr(exc, "doc", None))


@lru_cache(maxsize=64)
def _is_json(content_type: bytes) -> bool:
    media = content_type.decode("latin-1").partition(";")[0].strip().lower()
    maintype, _, subtype = media.partition("/")
    return maintype == "application" and (subtype == "json" or subtype.endswith("+json"))


def _loads(body: bytes) -> Any:
    try:
        return from_json(body)  # fast; agrees with json.loads wherever it succeeds
    except ValueError:
        pass  # json.loads decides, and words the error as FastAPI does
    try:
        return json.loads(body)
    except json.JSONDecodeError as exc:
        raise _json_error(exc, exc.pos) from exc
    except UnicodeDecodeError as exc:
        raise _json_error(exc, exc.start) from exc
    except (ValueError, RecursionError) as exc:
        raise _json_error(exc, 0) from exc


def read_body(message: Request) -> Any:
    """The body FastAPI's solver expects: decoded JSON, raw bytes, or `Undefined` when empty."""
    body: bytes = message._body
    if not body:
        return _compat.Undefined
    for name, value in message.scope["headers"]:
        if name == b"content-type":
            return _loads(body) if _is_json(value) else body
    return _loads(body)


class MessageSession:
    """FastAPI dependency injection for one handler, built once; call it once per message."""

    __slots__ = ("_dependant", "_embed", "_plan", "_provider_factory")

    def __init__(self, dependant: _compat.Dependant, provider_factory: ProviderFactory) -> None:
        if dependant.call is None:
            raise TypeError(
                "get_session() expected the Dependant of a handler, got one without a call; "
                "build it with fastapi_streamkit._compat.build_dependant(handler, path=...)"
            )
        self._dependant = dependant
        self._provider_factory = provider_factory
        self._embed = _compat.embed_body_fields(dependant)
        self._plan: Plan = compile_plan(dependant, embed_body_fields=self._embed)

    @property
    def dependant(self) -> _compat.Dependant:
        """The handler's FastAPI `Dependant`."""
        return self._dependant

    async def __call__(self, message: Request) -> Any:
        """Run the handler for ``message``; every teardown has run when this returns."""
        plan = self._plan
        provider = self._provider_factory()
        overrides = getattr(provider, "dependency_overrides", None)
        if plan.has_generators or (overrides and plan.overridden(overrides)):
            async with _MessageRun(self, message, provider) as result:
                return result
        if isinstance(provider, Starlette):
            message.scope.setdefault("app", provider)
        body = read_body(message) if plan.has_body else _compat.Undefined
        ctx = Context(message, body, plan.embed_body_fields)
        values = await solve(plan.root, ctx)
        if ctx.errors:
            raise RequestValidationError(ctx.errors, body=body)
        if plan.is_coroutine:
            result = await plan.call(**values)
        else:
            result = await run_in_threadpool(plan.call, **values)
        if ctx.background is not None:
            await ctx.background()
        return result

    def open(self, message: Request) -> _MessageRun:
        """``async with session.open(message) as result:`` teardown runs after the block."""
        return _MessageRun(self, message)


class _MessageRun:
    """One message through one session: solve and call on enter, teardown on exit."""

    __slots__ = ("_background", "_message", "_provider", "_session", "_stack")

    def __init__(self, session: MessageSession, message: Request, provider: Any = _UNSET):
        self._session = session
        self._message = message
        self._provider = provider
        self._stack: AsyncExitStack | None = None
        self._background: BackgroundTasks | None = None

    async def __aenter__(self) -> Any:
        session = self._session
        message = self._message
        plan = session._plan
        provider = self._provider
        if provider is _UNSET:
            provider = session._provider_factory()
        use_solver = False
        if provider is not None:
            if isinstance(provider, Starlette):
                message.scope.setdefault("app", provider)
            overrides = getattr(provider, "dependency_overrides", None)
            if overrides:
                use_solver = plan.overridden(overrides)
        body = read_body(message) if plan.has_body else _compat.Undefined
        if not (use_solver or plan.has_generators):
            ctx = Context(message, body, plan.embed_body_fields)
            values = await solve(plan.root, ctx)
            if ctx.errors:
                raise RequestValidationError(ctx.errors, body=body)
            self._background = ctx.background
            if plan.is_coroutine:
                return await plan.call(**values)
            return await run_in_threadpool(plan.call, **values)
        stack = self._stack = AsyncExitStack()
        await stack.__aenter__()
        try:
            return await self._run_stacked(provider if use_solver else None, body)
        except BaseException as exc:
            if not await stack.__aexit__(type(exc), exc, exc.__traceback__):
                raise
            raise _swallowed(exc) from exc

    async def _run_stacked(self, provider: Any, body: Any) -> Any:
        """Solve with exit stacks, as FastAPI's request handler; ``provider``: use the solver."""
        session, message, plan = self._session, self._message, self._session._plan
        function_stack = AsyncExitStack()
        assert self._stack is not None
        message.scope["fastapi_inner_astack"] = self._stack
        message.scope["fastapi_function_astack"] = function_stack
        result = _UNSET
        async with function_stack:
            if provider is not None:
                solved = await _compat.solve_dependencies(
                    request=message,
                    dependant=session._dependant,
                    body=body,
                    dependency_overrides_provider=provider,
                    async_exit_stack=self._stack,
                    embed_body_fields=session._embed,
                )
                values, errors = solved.values, solved.errors
                self._background = solved.background_tasks
            else:
                ctx = Context(message, body, plan.embed_body_fields)
                values = await solve(plan.root, ctx)
                errors, self._background = ctx.errors, ctx.background
            if errors:
                raise RequestValidationError(errors, body=body)
            result = await _call(plan, values)
        if result is _UNSET:  # a function-scoped dependency swallowed the handler's exception
            raise _swallowed(None)
        return result

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        stack = self._stack
        if exc is None and self._background is not None:
            try:
                await self._background()
            except BaseException as bg_exc:
                if stack is not None:
                    await stack.__aexit__(type(bg_exc), bg_exc, bg_exc.__traceback__)
                raise
        if stack is not None:
            await stack.__aexit__(exc_type, exc, tb)
        return False  # the caller's exception is never swallowed


async def _call(plan: Plan, values: dict[str, Any]) -> Any:
    if plan.is_coroutine:
        return await plan.call(**values)
    return await run_in_threadpool(plan.call, **values)


def _swallowed(exc: BaseException | None) -> FastAPIError:
    return FastAPIError(
        "The handler produced no result: a dependency with yield caught an exception "
        f"({exc!r}) without raising it again. Re-raise it in the dependency's except block."
    )
