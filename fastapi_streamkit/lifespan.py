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
- `LifespanMount(path, app, name=None, *, middleware=None, max_body_size=None,
  startup_timeout=None, shutdown_timeout=None)`: a Starlette `Mount` that drives its app's
  lifespan in its own task and gives that app's requests the state its lifespan yielded.
- `mount(app, path, sub_app, ...)`: registers a `LifespanMount` on a FastAPI/Starlette app (or
  a router) and wraps the router's ``lifespan_context`` so sub-apps start after the host's
  lifespan, in call order, and stop in reverse before it.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, cast

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Mount, Router
from starlette.types import ASGIApp, Lifespan, Receive, Scope, Send

from ._asgi_lifespan import LifespanPhase, SubAppLifespan
from ._lifespan_parts import CallbackPart as CallbackPart
from ._lifespan_parts import ContextPart as ContextPart
from ._lifespan_parts import Hook as Hook
from ._lifespan_parts import LifespanPart as LifespanPart
from ._lifespan_parts import run_parts as run_parts

__all__ = [
    "AnyASGIApp",
    "CallbackPart",
    "ContextPart",
    "Hook",
    "LifespanMount",
    "LifespanPart",
    "LifespanPhase",
    "mount",
    "run_parts",
]


AnyASGIApp = Callable[..., Awaitable[None]]
"""Any ASGI application, whichever framework's types it is annotated with (Litestar's differ)."""


class LifespanMount(Mount):
    """A `Mount` that runs its app's lifespan (as a `LifespanPart`) and keeps its state."""

    def __init__(
        self,
        path: str,
        app: AnyASGIApp,
        name: str | None = None,
        *,
        middleware: Sequence[Middleware] | None = None,
        max_body_size: int | None = None,
        startup_timeout: float | None = None,
        shutdown_timeout: float | None = None,
    ) -> None:
        asgi_app = cast(ASGIApp, app)
        super().__init__(
            path, app=asgi_app, name=name, middleware=middleware, max_body_size=max_body_size
        )
        kind = app.__name__ if inspect.isfunction(app) else type(app).__name__
        title = f"{name!r} ({kind})" if name else kind
        self._lifespan = SubAppLifespan(
            asgi_app,
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
    sub_app: AnyASGIApp,
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
