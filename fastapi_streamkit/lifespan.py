"""Lifespan mounting: sub-apps whose startup and shutdown really run.

`app.mount()` never runs a sub-app's lifespan (Starlette #649). `mount(app, path, sub_app)`
does, over the ASGI lifespan protocol, so FastAPI, Starlette, Litestar, FastStream and raw
ASGI apps all work, and apps that do not support lifespan are tolerated (logged once, debug).

The pieces, for `StreamRouter` and for users who compose their own lifespans:

- `LifespanPart` (a Protocol): ``label`` plus ``async startup()`` / ``async shutdown()``.
- `CallbackPart(label, startup=..., shutdown=...)`: a part from plain callables (sync or async,
  one or a list read at call time), e.g. hooks; `LifespanMount` is a part too.
- `ContextPart(label, context)`: a part around an async context manager (a user lifespan),
  exited as on a clean exit, so a later part's failure shuts it down for real.
- `run_parts(parts)`: ``async with run_parts(parts): ...`` starts the parts in order. When one
  fails, what already started is shut down (really, in reverse), then `LifespanStartupError`
  names the failing part and carries its traceback text. On exit every started part is stopped
  in reverse even if some fail; the failures are raised together as `LifespanShutdownError`
  (an ExceptionGroup). Shutdowns are shielded from cancellation: a part is stopped, not
  cancelled (bound them with ``shutdown_timeout``).
- Parts are re-entrant: a part started again while running (a router included twice) starts
  once and is stopped by its outermost run, so it runs exactly once per lifespan cycle.
  ``startup()`` and ``shutdown()`` of a `LifespanMount` must run in the same task, in
  last-in first-out order with other parts (`run_parts` guarantees both).
- `LifespanMount(path, app, name=None, *, middleware=None, startup_timeout=None,
  shutdown_timeout=None)`: a Starlette `Mount` that drives its app's lifespan in its own task
  and gives that app's requests the state its lifespan yielded.
- `mount(app, path, sub_app, ...)`: registers a `LifespanMount` on a FastAPI/Starlette app (or
  a router) and wraps the router's ``lifespan_context`` so sub-apps start after the host's
  lifespan, in call order, and stop in reverse before it.
"""

from __future__ import annotations

import inspect
import traceback
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Generic, Protocol, TypeVar, cast, runtime_checkable

import anyio
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Mount, Router
from starlette.types import ASGIApp, Lifespan, Receive, Scope, Send

from ._asgi_lifespan import LifespanPhase, SubAppLifespan
from .exceptions import LifespanError, LifespanShutdownError, LifespanStartupError

__all__ = [
    "CallbackPart",
    "ContextPart",
    "LifespanMount",
    "LifespanPart",
    "LifespanPhase",
    "mount",
    "run_parts",
]

T = TypeVar("T")

Hook = Callable[[], object]
"""A zero-argument callable; when it returns an awaitable, that is awaited."""


@runtime_checkable
class LifespanPart(Protocol):
    """One thing that starts and stops with the app: a sub-app, a hook list, a broker."""

    @property
    def label(self) -> str:
        """Names the part in errors, e.g. ``"sub-app 'admin' mounted at '/admin'"``."""
        ...

    async def startup(self) -> None:
        """Start; raise to fail the app's startup."""
        ...

    async def shutdown(self) -> None:
        """Stop for real (never called when ``startup`` failed)."""
        ...


class CallbackPart:
    """A `LifespanPart` made of plain callables (sync or async), run in the order given."""

    def __init__(
        self,
        label: str,
        *,
        startup: Hook | Sequence[Hook] | None = None,
        shutdown: Hook | Sequence[Hook] | None = None,
    ) -> None:
        self._label = label
        self._startup = startup
        self._shutdown = shutdown
        self._users = 0

    @property
    def label(self) -> str:
        """The name given at construction."""
        return self._label

    async def startup(self) -> None:
        """Call the startup callables (only the first of nested starts does)."""
        self._users += 1
        if self._users == 1:
            try:
                await _call_all(self._startup)
            except BaseException:
                self._users = 0
                raise

    async def shutdown(self) -> None:
        """Call the shutdown callables when the outermost start is undone."""
        if self._users > 0:
            self._users -= 1
            if self._users == 0:
                with anyio.CancelScope(shield=True):
                    await _call_all(self._shutdown)

    def __repr__(self) -> str:
        return f"CallbackPart({self._label!r})"


class ContextPart(Generic[T]):
    """A `LifespanPart` around an async context manager, exited as on a clean exit.

    A failure of a later part therefore shuts it down for real (code after its ``yield``
    runs) instead of throwing the error into it. ``value`` is what it entered with.
    """

    def __init__(self, label: str, context: AbstractAsyncContextManager[T]) -> None:
        self._label = label
        self._context = context
        self._value: T | None = None

    @property
    def label(self) -> str:
        """The name given at construction."""
        return self._label

    @property
    def value(self) -> T | None:
        """What entering the context returned (None before)."""
        return self._value

    async def startup(self) -> None:
        """Enter the context."""
        self._value = await self._context.__aenter__()

    async def shutdown(self) -> None:
        """Exit the context as if its block had ended normally (not shielded: it may close
        task groups the context opened, which must happen in the scope they were opened in)."""
        await self._context.__aexit__(None, None, None)


async def _call_all(hooks: Hook | Sequence[Hook] | None) -> None:
    if hooks is None:
        return
    for hook in [hooks] if callable(hooks) else list(hooks):
        result = hook()
        if inspect.isawaitable(result):
            await result


@asynccontextmanager
async def run_parts(parts: Iterable[LifespanPart]) -> AsyncIterator[None]:
    """Start ``parts`` in order, roll back on failure, stop them all in reverse on exit."""
    started: list[LifespanPart] = []
    for part in parts:
        try:
            await part.startup()
        except Exception as exc:
            rollback = await _stop_all(started)
            raise _startup_error(part, exc, rollback) from exc
        except BaseException:
            await _stop_all(started)
            raise
        started.append(part)
    try:
        yield
    finally:
        errors = await _stop_all(started)
        if errors:
            labels = "; ".join(f"{label} ({type(e).__name__}: {e})" for label, e in errors)
            count = f"{len(errors)} lifespan part{'s' if len(errors) > 1 else ''}"
            raise LifespanShutdownError(f"{count} failed to stop: {labels}", [e for _, e in errors])


async def _stop_all(started: list[LifespanPart]) -> list[tuple[str, Exception]]:
    """Stop ``started`` in reverse; return the failures with their part's label."""
    errors: list[tuple[str, Exception]] = []
    for part in reversed(started):
        try:
            await part.shutdown()
        except Exception as exc:
            exc.add_note(f"while stopping {part.label}")
            errors.append((part.label, exc))
    started.clear()
    return errors


def _startup_error(
    part: LifespanPart, exc: Exception, rollback: list[tuple[str, Exception]]
) -> LifespanStartupError:
    message = f"{part.label} failed to start: {type(exc).__name__}: {exc}"
    if not isinstance(exc, LifespanError):  # ours already carry the sub-app's own traceback
        message += "\n\n" + "".join(traceback.format_exception(exc)).rstrip()
    for label, error in rollback:
        message += (
            f"\n\nwhile rolling back, {label} failed to stop: {type(error).__name__}: {error}"
        )
    return LifespanStartupError(message, label=part.label)


class LifespanMount(Mount):
    """A `Mount` that runs its app's lifespan (as a `LifespanPart`) and keeps its state."""

    def __init__(
        self,
        path: str,
        app: ASGIApp,
        name: str | None = None,
        *,
        middleware: Sequence[Middleware] | None = None,
        startup_timeout: float | None = None,
        shutdown_timeout: float | None = None,
    ) -> None:
        super().__init__(path, app=app, name=name, middleware=middleware)
        kind = app.__name__ if inspect.isfunction(app) else type(app).__name__
        title = f"{name!r} ({kind})" if name else kind
        self._lifespan = SubAppLifespan(
            app,
            label=f"sub-app {title} mounted at {path!r}",
            startup_timeout=startup_timeout,
            shutdown_timeout=shutdown_timeout,
        )

    @property
    def label(self) -> str:
        """``"sub-app 'name' (Kind) mounted at '/path'"``, used in errors."""
        return self._lifespan.label

    @property
    def phase(self) -> LifespanPhase:
        """Where the sub-app's lifespan stands."""
        return self._lifespan.phase

    @property
    def state(self) -> Mapping[str, object] | None:
        """The state the sub-app's lifespan yielded, while it runs; else None."""
        return self._lifespan.state

    async def startup(self) -> None:
        """Send ``lifespan.startup`` to the app and wait for its answer (or the timeout)."""
        await self._lifespan.startup()

    async def shutdown(self) -> None:
        """Send ``lifespan.shutdown`` to the app and wait for its answer (or the timeout)."""
        await self._lifespan.shutdown()

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Route into the app; its requests see its own lifespan state over the host's."""
        state = self._lifespan.state
        if state is not None:
            scope = {**scope, "state": {**scope.get("state", {}), **state}}
        await self.app(scope, receive, send)


class _HostLifespan:
    """A router's ``lifespan_context``: the host's own lifespan, then its mounted sub-apps."""

    def __init__(self, inner: Lifespan[Any]) -> None:
        self.inner = inner
        self.mounts: list[LifespanMount] = []

    def __call__(self, app: object) -> AbstractAsyncContextManager[Mapping[str, Any] | None]:
        return self._run(app)

    @asynccontextmanager
    async def _run(self, app: object) -> AsyncIterator[Mapping[str, Any] | None]:
        host = ContextPart("the host's lifespan", self.inner(app))
        async with run_parts((host, *self.mounts)):
            yield host.value


def mount(
    app: Starlette | Router,
    path: str,
    sub_app: ASGIApp,
    *,
    name: str | None = None,
    startup_timeout: float | None = None,
    shutdown_timeout: float | None = None,
) -> Mount:
    """Mount ``sub_app`` at ``path`` on ``app`` and run its lifespan inside the host's."""
    router = app.router if isinstance(app, Starlette) else app
    current: object = router.lifespan_context
    if isinstance(current, _HostLifespan):
        host = current
    else:
        host = _HostLifespan(router.lifespan_context)
        router.lifespan_context = cast("Lifespan[Any]", host)
    route = LifespanMount(
        path,
        sub_app,
        name=name,
        startup_timeout=startup_timeout,
        shutdown_timeout=shutdown_timeout,
    )
    for other in host.mounts:
        if other._lifespan.app is sub_app:
            route._lifespan = other._lifespan
    host.mounts.append(route)
    router.routes.append(route)
    return route
