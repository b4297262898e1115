"""`RedisGroupSubscription`: a consumer-group member (XREADGROUP, XAUTOCLAIM, XACK, dead letters).

Groups are created at the subscriber's start position (``XGROUP CREATE ... MKSTREAM``); a
group lost with Redis's data (NOGROUP) is created again. Every ``min(claim_idle / 4, 1 s)``
the consumer claims entries idle longer than ``claim_idle``; a local batch older than
``claim_idle / 2`` is re-owned (``XCLAIM ... JUSTID``) before it is handed out.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from typing import TYPE_CHECKING, Any

import anyio
from redis.exceptions import RedisError, ResponseError

from ._entries import MalformedEntry, dead_letter_fields
from ._redis_subscription import BATCH, BLOCK_MS, DISCOVERY_S, READ_GRACE_S, RedisSubscription
from ._topics import TopicPattern, format_id

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from .redis import RedisBroker

__all__ = ["RedisGroupSubscription"]

logger = logging.getLogger("fastapi_streamkit.brokers")


class RedisGroupSubscription(RedisSubscription):
    """One consumer of a group: each message goes to one consumer until acked."""

    def __init__(
        self,
        broker: RedisBroker,
        pattern: TopicPattern,
        group: str,
        start: tuple[int, int],
        floors: dict[str, tuple[int, int]],
    ) -> None:
        self.group_name = group
        self._ready: set[bytes] = set()  # streams where our group exists
        self._claim_from: dict[bytes, bytes] = {}
        self._fetched = 0.0  # when the batch was read or claimed
        self._consumer = broker.consumer_name()
        self._claim_every = max(0.05, min(broker.claim_idle / 4, 1.0))
        self._next_claim = 0.0
        super().__init__(broker, pattern, group, start, floors)

    def _add(self, topic: str) -> None:
        key = (self.broker.prefix + topic).encode()
        self._cursors[key] = b">"
        self._claim_from[key] = b"0-0"

    async def _fill(self, client: Redis) -> None:
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
        block = int(min(BLOCK_MS, self._claim_every * 1000, DISCOVERY_S * 1000))
        pipe.xreadgroup(self.group_name, self._consumer, self._cursors, count=BATCH, block=block)  # type: ignore[arg-type]
        try:
            with anyio.fail_after(block / 1000 + READ_GRACE_S):
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
                await client.xgroup_create(key, self.group_name, id=format_id(start), mkstream=True)
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
                pipe.xack(key, self.group_name, raw_id)
                pipe.sadd(self.broker.registry, dlq[self._skip :])
            await pipe.execute()

    async def _claim(self, client: Redis) -> None:
        idle_ms = int(self.broker.claim_idle * 1000)
        for key in list(self._cursors):
            start = self._claim_from.get(key, b"0-0")
            reply: Any = await client.xautoclaim(
                key, self.group_name, self._consumer, idle_ms, start_id=start, count=BATCH
            )
            self._claim_from[key] = reply[0]
            claimed = [(raw_id, fields) for raw_id, fields in reply[1] if raw_id is not None]
            if not claimed:
                continue
            async with client.pipeline(transaction=False) as pipe:
                for raw_id, _ in claimed:
                    pipe.xpending_range(key, self.group_name, raw_id, raw_id, 1)
                counts = await pipe.execute()
            attempts = {
                raw_id: int(found[0]["times_delivered"]) if found else 2
                for (raw_id, _), found in zip(claimed, counts, strict=True)
            }
            self._fetched = time.monotonic()
            await self._accept(client, [(key, claimed)], attempts)

    def _batch_is_stale(self) -> bool:
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
            pipe.xclaim(key, self.group_name, self._consumer, elapsed_ms, [message.id], justid=True)
        try:
            owned = await pipe.execute(raise_on_error=False)
        except (OSError, RedisError):
            return  # still pending: claimed by someone (maybe us) after claim_idle
        self._batch.extend(
            m for m, ids in zip(batch, owned, strict=True) if ids and isinstance(ids, list)
        )
