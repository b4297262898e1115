"""Turning response content into an iterator, and closing it: worker threads for sync sources."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Sequence
from typing import Any

import anyio
import anyio.lowlevel
import anyio.to_thread

__all__ = ["DONE", "close_source", "opener", "thread_limiter"]

DONE = object()
"""Returned instead of an item by a source that is exhausted."""

_THREADS = 256
_limiter: anyio.lowlevel.RunVar[anyio.CapacityLimiter] = anyio.lowlevel.RunVar("streamkit_limiter")


def thread_limiter() -> anyio.CapacityLimiter:
    """The package's own worker-thread limiter (one per event loop) for sync sources.

    Separate from anyio's default limiter, which FastAPI's sync endpoints use: open sync
    streams never starve them.
    """
    try:
        return _limiter.get()
    except LookupError:
        limiter = anyio.CapacityLimiter(_THREADS)
        _limiter.set(limiter)
        return limiter


def is_iterable(content: object) -> bool:
    """True for a sync or async iterable, False for a zero-argument callable returning one."""
    return isinstance(content, (Iterable, AsyncIterable))


def opener(content: Any) -> Callable[[], Any]:
    """A function that turns ``content`` into an iterator, called when the body starts.

    Async iterables are iterated in the event loop, in-memory sequences too (they cannot block),
    anything else sync in worker threads.
    """

    def open_source() -> Any:
        source = content if is_iterable(content) else content()
        if isinstance(source, AsyncIterable):
            return source.__aiter__()
        if isinstance(source, (str, bytes, memoryview)):
            source = (source,)
        if isinstance(source, Sequence):
            return _ready(source)
        return iter(source)

    return open_source


async def _ready(items: Sequence[Any]) -> AsyncIterator[Any]:
    for item in items:
        yield item


async def close_source(source: object) -> None:
    """Close a source so its ``finally`` runs: ``aclose()``, or ``close()`` in a worker thread."""
    aclose = getattr(source, "aclose", None)
    if aclose is not None:
        await aclose()
        return
    close = getattr(source, "close", None)
    if close is not None:
        await anyio.to_thread.run_sync(close, limiter=thread_limiter())
