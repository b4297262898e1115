"""One broadcast `RedisBroker` subscription: the topic's shared tail, or XREAD for a pattern.

`RedisGroupSubscription` (in `._redis_group`) extends it for consumer groups.

Every Redis error ends in a bounded exponential backoff (0.05 s doubling to 1 s) with a log
line, then the loop carries on from its cursor: a restarted Redis is picked up within a
second of answering again.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from typing import TYPE_CHECKING, Any

import anyio
from redis.exceptions import RedisError

from ._entries import MalformedEntry, decode_entry
from ._topics import TopicPattern, format_id, parse_id
from .base import Message

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from ._redis_tail import Tail
    from .redis import RedisBroker

__all__ = ["RedisSubscription"]

logger = logging.getLogger("fastapi_streamkit.brokers")

BATCH = 128
BLOCK_MS = 1000
DISCOVERY_S = 0.25  # a new topic matching a pattern is seen within ~0.5 s
_MIN_DELAY, _MAX_DELAY = 0.05, 1.0
READ_GRACE_S = 10.0  # a blocking read that outlives its BLOCK by this much: Redis is stuck


class RedisSubscription:
    """An async iterator of `Message` over one or more Redis streams; ``aclose()`` ends it."""

    def __init__(
        self,
        broker: RedisBroker,
        pattern: TopicPattern,
        group: str | None,
        start: tuple[int, int],
        floors: dict[str, tuple[int, int]],
    ) -> None:
        self.broker = broker
        self.pattern = pattern
        self.group = group
        self._epoch = broker._epoch
        self._start = start
        self._floors = floors
        self._skip = len(broker.prefix.encode())
        self._cursors: dict[bytes, bytes] = {}  # stream key -> last id read (or ">" in a group)
        self._batch: deque[Message] = deque()
        self._closed = False
        self._next_discovery = 0.0
        self._outage: float | None = None
        self._delay = _MIN_DELAY
        self._tail_cursor = max(start, floors.get(pattern.pattern, (0, 0)))
        self._tail: Tail | None = None  # broadcast of one topic: the shared reader
        if group is None and not pattern.is_pattern:
            self._join_tail()
        if not pattern.is_pattern:
            self._add(pattern.pattern)

    def __aiter__(self) -> RedisSubscription:
        return self

    async def __anext__(self) -> Message:
        while True:
            if self._batch:
                if self._batch_is_stale():
                    await self._refresh_batch()
                    continue
                return self._batch.popleft()
            client = self._client()
            if client is None:
                raise StopAsyncIteration
            try:
                await self._fill(client)
            except (OSError, RedisError, TimeoutError) as exc:
                if self._client() is None:
                    raise StopAsyncIteration from None
                await self._backoff(exc)
            else:
                self._recovered()

    async def aclose(self) -> None:
        """Stop this subscription; group messages it did not ack are claimed by others later."""
        self._closed = True
        self._batch.clear()
        if self._tail is not None:
            self._tail.watchers.discard(self)

    def _client(self) -> Redis | None:
        broker = self.broker
        if self._closed or self._epoch != broker._epoch:
            return None
        return broker._client

    def _add(self, topic: str) -> None:
        key = (self.broker.prefix + topic).encode()
        start = max(self._start, self._floors.get(topic, (0, 0)))
        self._cursors[key] = format_id(start).encode()

    def _batch_is_stale(self) -> bool:
        return False  # a broadcast batch never is; a group's can be (see _redis_group)

    async def _refresh_batch(self) -> None:
        """Bring a stale batch up to date (nothing to do for broadcast)."""

    async def _discover(self, client: Redis) -> None:
        now = time.monotonic()
        if not self.pattern.is_pattern or now < self._next_discovery:
            return
        self._next_discovery = now + DISCOVERY_S
        members: Any = await client.smembers(self.broker.registry)
        for raw in members:
            topic = raw.decode()
            if self.pattern.matches(topic) and (self.broker.prefix + topic).encode() not in (
                self._cursors
            ):
                self._add(topic)

    async def _idle_until_discovery(self) -> None:
        await anyio.sleep(max(0.0, self._next_discovery - time.monotonic()))

    def _message(self, key: bytes, raw_id: bytes, fields: Any, attempt: int) -> Message:
        body, headers = decode_entry(fields)
        topic = key[self._skip :].decode()
        return Message(raw_id.decode(), topic, body, headers, self.group, attempt)

    async def _fill(self, client: Redis) -> None:
        if not self.pattern.is_pattern:
            return await self._fill_from_tail(client)
        await self._discover(client)
        if not self._cursors:
            return await self._idle_until_discovery()
        block = int(DISCOVERY_S * 1000)
        with anyio.fail_after(block / 1000 + READ_GRACE_S):
            response: Any = await client.xread(self._cursors, count=BATCH, block=block)  # type: ignore[arg-type]
        for key, entries in response or ():
            self._take(key, entries)

    async def _fill_from_tail(self, client: Redis) -> None:
        """Serve from the topic's shared tail; catch up with XRANGE while behind it."""
        tail = self._tail
        if tail is None or tail.stopped:
            tail = self._join_tail()
        tail.ensure_running()
        changed = tail.changed
        if tail.covers(self._tail_cursor):
            found = tail.after(self._tail_cursor, BATCH)
            if found:
                self._batch.extend(message for _, message in found)
                self._tail_cursor = found[-1][0]
            else:
                await changed.wait()  # the tail wakes its subscribers at least every second
            return
        raw_cursor = format_id(self._tail_cursor).encode()
        entries: Any = await client.xrange(tail.key, b"(" + raw_cursor, b"+", count=BATCH)
        if entries:
            self._take(tail.key, entries)
            self._tail_cursor = parse_id(self._cursors[tail.key]) or self._tail_cursor
        else:  # nothing after the cursor exists: nothing between it and the tail either
            self._tail_cursor = max(self._tail_cursor, tail.base)

    def _join_tail(self) -> Tail:
        # A tail created now starts at our cursor: subscribers that subscribe together (the
        # usual case) need no catch-up read of their own.
        tail = self._tail = self.broker.tail(self.pattern.pattern, self._tail_cursor)
        tail.watchers.add(self)
        return tail

    def _take(self, key: bytes, entries: Any) -> None:
        for raw_id, fields in entries:
            self._cursors[key] = raw_id
            try:
                self._batch.append(self._message(key, raw_id, fields, 1))
            except MalformedEntry as exc:
                logger.warning("skipping stream entry %s of %r: %s", raw_id, key, exc)

    async def _backoff(self, exc: BaseException) -> None:
        if self._outage is None:
            self._outage = time.monotonic()
            logger.warning(
                "RedisBroker: subscription to %r lost Redis at %s (%s); reconnecting with backoff",
                self.pattern.pattern,
                self.broker.url,
                exc,
            )
        await anyio.sleep(self._delay)
        self._delay = min(self._delay * 2, _MAX_DELAY)

    def _recovered(self) -> None:
        if self._outage is not None:
            logger.warning(
                "RedisBroker: subscription to %r reconnected after %.1fs",
                self.pattern.pattern,
                time.monotonic() - self._outage,
            )
            self._outage = None
            self._delay = _MIN_DELAY
