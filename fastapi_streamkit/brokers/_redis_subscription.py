"""One `RedisBroker` subscription: XREAD BLOCK (broadcast) or XREADGROUP + XAUTOCLAIM (group).

Every Redis error ends in a bounded exponential backoff (0.05 s doubling to 1 s) with a log
line, then the loop carries on from its cursor: a restarted Redis is picked up within a
second of answering again. A group lost with Redis's data (NOGROUP) is created again.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from typing import TYPE_CHECKING, Any

import anyio
from redis.exceptions import RedisError, ResponseError

from ._entries import MalformedEntry, dead_letter_fields, decode_entry
from ._topics import TopicPattern, format_id, parse_id
from .base import Message

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from ._redis_tail import Tail
    from .redis import RedisBroker

__all__ = ["RedisSubscription"]

logger = logging.getLogger("fastapi_streamkit.brokers")

_BATCH = 128
_BLOCK_MS = 1000
_DISCOVERY_S = 0.25  # a new topic matching a pattern is seen within ~0.5 s
_MIN_DELAY, _MAX_DELAY = 0.05, 1.0
_READ_GRACE_S = 10.0  # a blocking read that outlives its BLOCK by this much: Redis is stuck


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
        self._ready: set[bytes] = set()  # streams where our group exists
        self._claim_from: dict[bytes, bytes] = {}
        self._batch: deque[Message] = deque()
        self._fetched = 0.0  # when the group batch was read, to refresh it before a claim
        self._closed = False
        self._consumer = broker.consumer_name()
        self._next_discovery = 0.0
        self._claim_every = max(0.05, min(broker.claim_idle / 4, 1.0))
        self._next_claim = 0.0
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
                if self.group is not None and self._batch_is_old():
                    await self._refresh_batch()
                    continue
                return self._batch.popleft()
            client = self._client()
            if client is None:
                raise StopAsyncIteration
            try:
                if self.group is None:
                    await self._fill_broadcast(client)
                else:
                    await self._fill_group(client)
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
        self._cursors[key] = b">" if self.group is not None else format_id(start).encode()
        self._claim_from[key] = b"0-0"

    async def _discover(self, client: Redis) -> None:
        now = time.monotonic()
        if not self.pattern.is_pattern or now < self._next_discovery:
            return
        self._next_discovery = now + _DISCOVERY_S
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

    async def _fill_broadcast(self, client: Redis) -> None:
        if not self.pattern.is_pattern:
            return await self._fill_from_tail(client)
        await self._discover(client)
        if not self._cursors:
            return await self._idle_until_discovery()
        block = int(_DISCOVERY_S * 1000)
        with anyio.fail_after(block / 1000 + _READ_GRACE_S):
            response: Any = await client.xread(self._cursors, count=_BATCH, block=block)  # type: ignore[arg-type]
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
            found = tail.after(self._tail_cursor, _BATCH)
            if found:
                self._batch.extend(message for _, message in found)
                self._tail_cursor = found[-1][0]
            else:
                await changed.wait()  # the tail wakes its subscribers at least every second
            return
        raw_cursor = format_id(self._tail_cursor).encode()
        entries: Any = await client.xrange(tail.key, b"(" + raw_cursor, b"+", count=_BATCH)
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

    async def _fill_group(self, client: Redis) -> None:
        await self._discover(client)
        if not self._cursors:
            return await self._idle_until_discovery()
        try:
            await self._read_group(client)
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            self._lost_groups()

    async def _read_group(self, client: Redis) -> None:
        await self._create_groups(client)
        if time.monotonic() >= self._next_claim:
            self._next_claim = time.monotonic() + self._claim_every
            await self._claim(client)
            if self._batch:
                return
        pipe = client.pipeline(transaction=False)
        acks = self.broker.take_acks(pipe)
        block = int(min(_BLOCK_MS, self._claim_every * 1000, _DISCOVERY_S * 1000))
        pipe.xreadgroup(self.group, self._consumer, self._cursors, count=_BATCH, block=block)  # type: ignore[arg-type]
        try:
            with anyio.fail_after(block / 1000 + _READ_GRACE_S):
                results = await pipe.execute(raise_on_error=False)
        except BaseException:
            self.broker.restore_acks(acks)
            raise
        response = results[-1]
        if isinstance(response, Exception):
            raise response
        self._fetched = time.monotonic()
        await self._accept(client, response or (), {})

    def _lost_groups(self) -> None:
        logger.warning(
            "RedisBroker: group %r vanished (Redis lost its data?); recreating", self.group
        )
        self._ready.clear()
        self._start = (0, 0)  # anything in a recreated stream is newer than the loss
        self._floors = {}

    async def _create_groups(self, client: Redis) -> None:
        for key in self._cursors:
            if key in self._ready:
                continue
            start = max(self._start, self._floors.get(key[self._skip :].decode(), (0, 0)))
            try:
                await client.xgroup_create(key, self.group, id=format_id(start), mkstream=True)  # type: ignore[arg-type]
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise
            self._ready.add(key)

    async def _accept(self, client: Redis, response: Any, attempts: dict[bytes, int]) -> None:
        dead: list[tuple[bytes, bytes, Any, str]] = []
        for key, entries in response:
            for raw_id, fields in entries:
                if raw_id is None:
                    continue  # a pending entry whose message was trimmed
                try:
                    message = self._message(key, raw_id, fields, attempts.get(raw_id, 1))
                except MalformedEntry as exc:
                    dead.append((key, raw_id, fields, str(exc)))
                else:
                    self._batch.append(message)
        if dead:
            await self._dead_letter(client, dead)

    async def _dead_letter(self, client: Redis, dead: list[tuple[bytes, bytes, Any, str]]) -> None:
        async with client.pipeline(transaction=True) as pipe:
            for key, raw_id, fields, reason in dead:
                dlq = key + b".dlq"
                logger.warning("moving stream entry %s of %r to %r: %s", raw_id, key, dlq, reason)
                entry = dead_letter_fields(raw_id.decode(), fields, reason)
                pipe.xadd(dlq, entry, maxlen=self.broker.history, approximate=True)  # type: ignore[arg-type]
                pipe.xack(key, self.group, raw_id)  # type: ignore[arg-type]
                pipe.sadd(self.broker.registry, dlq[self._skip :])
            await pipe.execute()

    async def _claim(self, client: Redis) -> None:
        idle_ms = int(self.broker.claim_idle * 1000)
        for key in list(self._cursors):
            start = self._claim_from.get(key, b"0-0")
            group: str = self.group  # type: ignore[assignment]
            reply: Any = await client.xautoclaim(
                key, group, self._consumer, idle_ms, start_id=start, count=_BATCH
            )
            self._claim_from[key] = reply[0]
            claimed = [(raw_id, fields) for raw_id, fields in reply[1] if raw_id is not None]
            if not claimed:
                continue
            async with client.pipeline(transaction=False) as pipe:
                for raw_id, _ in claimed:
                    pipe.xpending_range(key, self.group, raw_id, raw_id, 1)  # type: ignore[arg-type]
                counts = await pipe.execute()
            attempts = {
                raw_id: int(found[0]["times_delivered"]) if found else 2
                for (raw_id, _), found in zip(claimed, counts, strict=True)
            }
            self._fetched = time.monotonic()
            await self._accept(client, [(key, claimed)], attempts)

    def _batch_is_old(self) -> bool:
        return time.monotonic() - self._fetched > self.broker.claim_idle / 2

    async def _refresh_batch(self) -> None:
        """Re-own the batch (XCLAIM ... JUSTID) and drop what another consumer claimed since."""
        client = self._client()
        batch, self._batch = list(self._batch), deque()
        if client is None:
            return
        elapsed_ms = int((time.monotonic() - self._fetched) * 1000)
        self._fetched = time.monotonic()
        pipe = client.pipeline(transaction=False)
        for message in batch:
            key = (self.broker.prefix + message.topic).encode()
            pipe.xclaim(key, self.group, self._consumer, elapsed_ms, [message.id], justid=True)  # type: ignore[arg-type]
        try:
            owned = await pipe.execute(raise_on_error=False)
        except (OSError, RedisError):
            return  # still pending: claimed by someone (maybe us) after claim_idle
        self._batch.extend(
            m for m, ids in zip(batch, owned, strict=True) if ids and isinstance(ids, list)
        )

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
