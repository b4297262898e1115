"""Lifespan parts and their sequencer: `LifespanPart`, `CallbackPart`, `ContextPart`, `run_parts`.

Public through `fastapi_streamkit.lifespan`, whose docstring describes the semantics.
"""

from __future__ import annotations

import inspect
import traceback
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Generic, Protocol, TypeVar, runtime_checkable

import anyio

from .exceptions import LifespanError, LifespanShutdownError, LifespanStartupError

__all__ = ["CallbackPart", "ContextPart", "Hook", "LifespanPart", "run_parts"]

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
