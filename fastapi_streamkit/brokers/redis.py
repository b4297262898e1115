"""`RedisBroker`: one Redis stream per topic, consumer groups, resume by stream id.

Needs the ``[redis]`` extra (redis-py's asyncio client). Publishing is an ``XADD`` with an
approximate ``MAXLEN`` of ``history`` (plus, once per topic, an ``SADD`` to the topic registry
that pattern subscribers read). Subscriptions live in `._redis_subscription`. Acks are
write-behind: `ack` queues them and they reach Redis within moments, pipelined together and
with the consumer's next read.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import os
import socket
import time
import uuid

import anyio

from ..exceptions import BrokerNotRunning, BrokerUnavailable, MissingDependency
from ._entries import encode_entry
from ._redis_group import RedisGroupSubscription
from ._redis_subscription import RedisSubscription
from ._redis_tail import Tail
from ._topics import TopicPattern, check_publish, parse_id
from .base import Message

try:
    from redis.asyncio import ConnectionPool, Redis
    from redis.asyncio.client import Pipeline
    from redis.backoff import ExponentialBackoff
    from redis.exceptions import RedisError
    from redis.retry import Retry
except ImportError as exc:  # pragma: no cover - the extra is installed in the test env
    raise MissingDependency(
        "RedisBroker needs redis-py: pip install 'fastapi-streamkit[redis]'"
    ) from exc

__all__ = ["RedisBroker"]

logger = logging.getLogger("fastapi_streamkit.brokers")

_MAX_SEQ = 2**64 - 1
_Acks = dict[tuple[bytes, str], list[str]]


class _State(enum.Enum):
    IDLE = "idle"
    RUNNING = "running"
    CLOSED = "closed"


class RedisBroker:
    """Redis Streams broker: resumable broadcast, consumer groups with claims, reconnects."""

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        history: int = 10_000,
        claim_idle: float = 30.0,
        prefix: str = "streamkit:",
    ) -> None:
        if history < 1:
            raise ValueError(f"history must be at least 1 message, got {history!r}")
        if claim_idle <= 0:
            raise ValueError(f"claim_idle must be a positive number of seconds, got {claim_idle!r}")
        self.url = url
        self.history = history
        self.claim_idle = claim_idle
        self.prefix = prefix
        self.registry = f"{prefix}{{topics}}"  # braces never occur in a topic name
        self._state = _State.IDLE
        self._epoch = 0
        self._client: Redis | None = None
        self._offset_ms = 0.0  # Redis clock minus ours
        self._margin_ms = 2.0
        self._published: dict[str, str] = {}  # topic -> last id this broker published
        self._registered: set[str] = set()
        self._acks: _Acks = {}
        self._flusher: asyncio.Task[None] | None = None
        self._tails: dict[bytes, Tail] = {}

    def __repr__(self) -> str:
        return f"RedisBroker({self.url!r}, prefix={self.prefix!r})"

    async def start(self) -> None:
        """Connect (BrokerUnavailable when Redis does not answer); no-op when running."""
        if self._state is _State.RUNNING:
            return
        pool = ConnectionPool.from_url(
            self.url,
            # Blocking reads hold a connection each (one per topic tail, pattern subscription
            # and group consumer); the rest serve publishes and acks. (A BlockingConnectionPool
            # would wait instead of failing beyond the limit, but costs ~15% of throughput.)
            max_connections=1024,
            socket_connect_timeout=2.0,
            # socket_timeout=None (redis-py 8 defaults to 5 s): with a timeout, redis-py sends
            # through asyncio.wait_for(), which on Python 3.11 swallows a cancellation that
            # lands as the send completes, leaving the task running. Blocking reads are
            # bounded by the subscriptions (anyio.fail_after); keepalive finds dead peers.
            socket_timeout=None,
            socket_keepalive=True,
            retry=Retry(ExponentialBackoff(cap=0.5, base=0.02), 2),
        )
        client = Redis.from_pool(pool)
        try:
            before = time.time()
            seconds, micros = await client.time()
            after = time.time()
        except (RedisError, OSError) as exc:
            await client.aclose()
            raise BrokerUnavailable(
                f"RedisBroker cannot reach Redis at {self.url}: {exc}; start Redis or pass "
                "the right url= (redis://host:port/db)"
            ) from exc
        self._offset_ms = seconds * 1000 + micros / 1000 - (before + after) * 500
        self._margin_ms = (after - before) * 500 + 2.0
        self._client = client
        self._registered.clear()
        self._state = _State.RUNNING
        self._epoch += 1

    async def close(self) -> None:
        """Flush queued acks (bounded), end every subscription and disconnect; idempotent."""
        if self._state is not _State.RUNNING or self._client is None:
            return
        client = self._client
        with anyio.move_on_after(2.0):
            while self._acks:
                try:
                    await self.flush_acks(client)
                except (RedisError, OSError):
                    break
        self._state = _State.CLOSED
        self._epoch += 1
        tails, self._tails = list(self._tails.values()), {}
        for tail in tails:
            if tail.task is not None:
                tail.task.cancel()
            tail.wake()
        await asyncio.gather(*(t.task for t in tails if t.task is not None), return_exceptions=True)
        self._client = None
        await client.aclose()

    async def ping(self) -> bool:
        """True when Redis answers a PING within a second; never raises."""
        client = self._client
        if client is None:
            return False
        try:
            with anyio.fail_after(1.0):
                return bool(await client.ping())
        except Exception:
            return False

    async def publish(
        self, topic: str, body: bytes, *, headers: dict[str, str] | None = None
    ) -> str:
        """XADD the message to ``topic``'s stream; BrokerUnavailable while Redis is down."""
        client = self.running_client("publish")
        body, headers = check_publish(topic, body, headers)
        command = ("XADD", self.prefix + topic, "MAXLEN", "~", self.history, "*")
        fields = encode_entry(body, headers)
        try:
            if topic in self._registered:
                raw = await client.execute_command(*command, *fields)  # type: ignore[no-untyped-call]
            else:
                async with client.pipeline(transaction=False) as pipe:
                    pipe.execute_command(*command, *fields)
                    pipe.sadd(self.registry, topic)
                    raw, _ = await pipe.execute()
                self._registered.add(topic)
        except (RedisError, OSError) as exc:
            self._registered.clear()
            raise BrokerUnavailable(
                f"cannot publish to {topic!r}: Redis at {self.url} failed ({exc}); the broker "
                "reconnects by itself, publish again later"
            ) from exc
        message_id: str = raw.decode() if isinstance(raw, bytes) else str(raw)
        self._published[topic] = message_id
        return message_id

    def subscribe(
        self, topic: str, *, group: str | None = None, last_id: str | None = None
    ) -> RedisSubscription:
        """Iterate ``topic`` (a name or ``{param}`` pattern) from now, or after ``last_id``.

        A group is created on first use at that position (``XGROUP CREATE ... MKSTREAM``);
        an existing group keeps its own position.
        """
        self.running_client("subscribe")
        pattern = TopicPattern(topic)
        if group is not None and (not isinstance(group, str) or not group):
            raise ValueError(f"group must be a non-empty string or None, got {group!r}")
        parsed = parse_id(last_id)
        floors = {}
        if parsed is None:
            # "Only new ones", fixed now: Redis's clock estimate, and never before the last
            # message this broker itself published to a matching topic.
            parsed = self.now_key()
            floors = {
                t: k
                for t, i in self._published.items()
                if pattern.matches(t) and (k := parse_id(i)) is not None
            }
        if group is None:
            return RedisSubscription(self, pattern, None, parsed, floors)
        return RedisGroupSubscription(self, pattern, group, parsed, floors)

    async def ack(self, message: Message) -> None:
        """Queue the XACK of a group message; sent within moments, pipelined with others."""
        if message.group is None:
            return
        key = ((self.prefix + message.topic).encode(), message.group)
        self._acks.setdefault(key, []).append(message.id)
        if self._state is _State.RUNNING and (self._flusher is None or self._flusher.done()):
            self._flusher = asyncio.get_running_loop().create_task(self._flush_loop())

    def now_key(self) -> tuple[int, int]:
        """An id just before Redis's "now" (its clock as measured at `start`, minus the error)."""
        estimate = int(time.time() * 1000 + self._offset_ms - self._margin_ms)
        return (max(estimate - 1, 0), _MAX_SEQ)

    def tail(self, topic: str, base: tuple[int, int]) -> Tail:
        """The shared reader of ``topic``; a new one (reading after ``base``) if none runs."""
        key = (self.prefix + topic).encode()
        tail = self._tails.get(key)
        if tail is None or tail.stopped:
            tail = self._tails[key] = Tail(self, key, topic, base)
        return tail

    def running_client(self, action: str) -> Redis:
        """The connected client, or BrokerNotRunning naming ``action``."""
        if self._state is not _State.RUNNING or self._client is None:
            raise BrokerNotRunning(
                f"cannot {action}: the RedisBroker is {self._state.value}; call "
                "`await broker.start()` first (a StreamRouter does it in the app's lifespan)"
            )
        return self._client

    def consumer_name(self) -> str:
        """A consumer name unique to one subscription: host, process and a random part."""
        return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

    def take_acks(self, pipe: Pipeline) -> _Acks:
        """Move the queued acks into ``pipe``; give them back with `restore_acks` on failure."""
        acks, self._acks = self._acks, {}
        for (key, group), ids in acks.items():
            pipe.xack(key, group, *ids)
        return acks

    def restore_acks(self, acks: _Acks) -> None:
        """Queue again acks whose pipeline failed."""
        for slot, ids in acks.items():
            self._acks.setdefault(slot, [])[:0] = ids

    async def flush_acks(self, client: Redis) -> None:
        """Send the queued acks now, in one pipeline."""
        pipe = client.pipeline(transaction=False)
        acks = self.take_acks(pipe)
        if not acks:
            return
        try:
            await pipe.execute(raise_on_error=False)  # XACK on a lost group is harmless
        except BaseException:
            self.restore_acks(acks)
            raise

    async def _flush_loop(self) -> None:
        delay = 0.05
        while self._acks and self._state is _State.RUNNING and self._client is not None:
            await asyncio.sleep(0)  # let the acks of this event-loop turn join the batch
            try:
                await self.flush_acks(self._client)
                delay = 0.05
            except (RedisError, OSError) as exc:
                logger.warning("RedisBroker: acks not sent (%s); retrying in %.2fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)
