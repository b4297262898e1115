"""One ``XREAD BLOCK`` loop per topic, shared by all broadcast subscribers of one `RedisBroker`.

A thousand SSE streams of one topic in one worker cost one Redis connection and one decode per
message. The tail keeps the last ``_RING`` messages it read; a subscriber whose cursor is older
(it resumes from ``last_id``, or fell behind) reads from Redis with ``XRANGE`` until it reaches
the tail, so it never misses a message Redis still has, and holds at most one batch.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from bisect import bisect_right
from collections import deque
from itertools import islice
from typing import TYPE_CHECKING, Any

import anyio
from redis.exceptions import RedisError

from ._entries import MalformedEntry, decode_entry
from ._topics import format_id, parse_id
from .base import Message

if TYPE_CHECKING:
    from .redis import RedisBroker

__all__ = ["Tail"]

logger = logging.getLogger("fastapi_streamkit.brokers")

_RING = 1024
_READ = 512
_BLOCK_MS = 1000
_GRACE_S = 10.0
_MIN_DELAY, _MAX_DELAY = 0.05, 1.0


def _key(entry: tuple[tuple[int, int], Message]) -> tuple[int, int]:
    return entry[0]


class Tail:
    """The live end of one stream, read once and shared; see the module docstring."""

    def __init__(self, broker: RedisBroker, key: bytes, topic: str, base: tuple[int, int]) -> None:
        self.broker = broker
        self.key = key
        self.topic = topic
        self.base = base  # every entry newer than this has been read, or will be
        self.cursor = format_id(base).encode()
        self.entries: deque[tuple[tuple[int, int], Message]] = deque(maxlen=_RING)
        self.trimmed: tuple[int, int] = (0, 0)  # newest entry dropped from the ring
        self.changed = anyio.Event()
        self.watchers: weakref.WeakSet[Any] = weakref.WeakSet()
        self.task: asyncio.Task[None] | None = None
        self._epoch = broker._epoch

    @property
    def stopped(self) -> bool:
        """True once its read loop ended (no subscriber left, or the broker closed)."""
        return self._epoch != self.broker._epoch or (self.task is not None and self.task.done())

    def ensure_running(self) -> None:
        """Start the read loop in the running event loop, unless it runs already."""
        if self.task is None:
            self.task = asyncio.get_running_loop().create_task(self._run())

    def covers(self, cursor: tuple[int, int]) -> bool:
        """True when every message after ``cursor`` is (or will be) in the ring."""
        return cursor >= self.base and cursor >= self.trimmed

    def after(self, cursor: tuple[int, int], limit: int) -> list[tuple[tuple[int, int], Message]]:
        """Up to ``limit`` (id key, message) pairs of the ring newer than ``cursor``."""
        entries = self.entries
        if not entries or entries[-1][0] <= cursor:
            return []
        start = 0 if entries[0][0] > cursor else bisect_right(entries, cursor, key=_key)
        return list(islice(entries, start, start + limit))

    def wake(self) -> None:
        """Wake every waiting subscriber."""
        self.changed.set()
        self.changed = anyio.Event()

    async def _run(self) -> None:
        outage: float | None = None
        delay = _MIN_DELAY
        while self.watchers and self._epoch == self.broker._epoch:
            client = self.broker._client
            if client is None:
                break
            try:
                with anyio.fail_after(_BLOCK_MS / 1000 + _GRACE_S):
                    reply: Any = await client.xread(
                        {self.key: self.cursor}, count=_READ, block=_BLOCK_MS
                    )
            except (OSError, RedisError, TimeoutError) as exc:
                if outage is None:
                    outage = time.monotonic()
                    logger.warning(
                        "RedisBroker: reading %r lost Redis at %s (%s); reconnecting with backoff",
                        self.topic,
                        self.broker.url,
                        exc,
                    )
                await anyio.sleep(delay)
                delay = min(delay * 2, _MAX_DELAY)
                continue
            if outage is not None:
                logger.warning(
                    "RedisBroker: reading %r reconnected after %.1fs",
                    self.topic,
                    time.monotonic() - outage,
                )
                outage, delay = None, _MIN_DELAY
            if reply:
                self._append(reply[0][1])
            else:
                self.wake()  # nothing new: waiting subscribers look at their state again
        self.wake()

    def _append(self, entries: Any) -> None:
        for raw_id, fields in entries:
            self.cursor = raw_id
            key = parse_id(raw_id)
            if key is None:
                continue
            try:
                body, headers = decode_entry(fields)
            except MalformedEntry as exc:
                logger.warning("skipping stream entry %s of %r: %s", raw_id, self.topic, exc)
                continue
            if len(self.entries) == self.entries.maxlen:
                self.trimmed = self.entries[0][0]
            self.entries.append((key, Message(raw_id.decode(), self.topic, body, headers)))
        self.wake()
