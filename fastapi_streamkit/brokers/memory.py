"""`MemoryBroker`: the embedded, in-process broker with bounded per-topic history.

Every topic keeps its last ``history`` messages. A broadcast subscriber is a cursor into that
history: it holds at most one small batch, and when it falls behind, the messages trimmed
before it read them are skipped (logged once per gap) -- memory never grows with a backlog.
A consumer group is a cursor plus the messages delivered and not yet acked, redelivered to
any consumer of the group ``claim_idle`` seconds after their delivery.
"""

from __future__ import annotations

import enum
import heapq
import logging
import math
import time
import weakref
from bisect import bisect_right
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import islice

import anyio

from ..exceptions import BrokerNotRunning
from ._topics import IdClock, TopicPattern, check_publish, format_id, parse_id
from .base import Message

__all__ = ["MemoryBroker"]

logger = logging.getLogger("fastapi_streamkit.brokers")

_BATCH = 128


class _State(enum.Enum):
    IDLE = "idle"
    RUNNING = "running"
    CLOSED = "closed"


@dataclass(slots=True, eq=False)
class _Entry:
    key: tuple[int, int]
    message: Message  # its broadcast form: group None, attempt 1


@dataclass(slots=True, eq=False)
class _Pending:
    entry: _Entry
    attempt: int
    deadline: float


@dataclass(slots=True, eq=False)
class _Group:
    cursor: tuple[int, int]
    pending: dict[str, _Pending] = field(default_factory=dict)  # ordered by deadline


class _Topic:
    __slots__ = ("entries", "groups", "name", "trimmed")

    def __init__(self, name: str, history: int) -> None:
        self.name = name
        self.entries: deque[_Entry] = deque(maxlen=history)
        self.groups: dict[str, _Group] = {}
        self.trimmed: tuple[int, int] = (0, 0)  # key of the newest message dropped

    def append(self, entry: _Entry) -> None:
        if len(self.entries) == self.entries.maxlen:
            self.trimmed = self.entries[0].key
        self.entries.append(entry)

    def after(self, key: tuple[int, int], limit: int) -> list[_Entry]:
        """Up to ``limit`` retained entries newer than ``key``, oldest first."""
        entries = self.entries
        if not entries or entries[-1].key <= key:
            return []
        start = 0 if entries[0].key > key else bisect_right(entries, key, key=_key)
        return list(islice(entries, start, start + limit))


def _key(entry: _Entry) -> tuple[int, int]:
    return entry.key


class MemoryBroker:
    """The embedded in-process broker: bounded per-topic history, broadcast and groups."""

    def __init__(self, *, history: int = 1000, claim_idle: float = 30.0) -> None:
        if history < 1:
            raise ValueError(f"history must be at least 1 message, got {history!r}")
        if claim_idle <= 0:
            raise ValueError(f"claim_idle must be a positive number of seconds, got {claim_idle!r}")
        self.history = history
        self.claim_idle = claim_idle
        self._state = _State.IDLE
        self._epoch = 0
        self._clock = IdClock()
        self._topics: dict[str, _Topic] = {}
        self._topic_list: list[_Topic] = []  # append-only, for pattern discovery
        self._subs: weakref.WeakSet[_Subscription] = weakref.WeakSet()
        self._watchers: dict[str, list[_Subscription]] = {}

    def __repr__(self) -> str:
        return f"MemoryBroker(history={self.history}, claim_idle={self.claim_idle})"

    async def start(self) -> None:
        """Start accepting publishes and subscriptions; does nothing when already running."""
        if self._state is not _State.RUNNING:
            self._state = _State.RUNNING
            self._epoch += 1

    async def close(self) -> None:
        """End every open subscription; idempotent. History and groups survive a restart."""
        if self._state is _State.RUNNING:
            self._state = _State.CLOSED
            for sub in list(self._subs):
                sub.wake.set()
            self._subs = weakref.WeakSet()
            self._watchers.clear()

    async def ping(self) -> bool:
        """True while the broker runs."""
        return self._state is _State.RUNNING

    async def publish(
        self, topic: str, body: bytes, *, headers: dict[str, str] | None = None
    ) -> str:
        """Append a message to ``topic``, wake its subscribers and return its id."""
        self._check_running("publish")
        body, headers = check_publish(topic, body, headers)
        key = self._clock.next()
        message_id = format_id(key)
        message = Message(id=message_id, topic=topic, body=body, headers=headers)
        self._topic(topic).append(_Entry(key, message))
        watchers = self._watchers.get(topic)
        if watchers is None:
            watchers = self._watchers[topic] = [s for s in self._subs if s.pattern.matches(topic)]
        for sub in watchers:
            sub.wake.set()
        return message_id

    def subscribe(
        self, topic: str, *, group: str | None = None, last_id: str | None = None
    ) -> _Subscription:
        """Iterate ``topic`` (a name or ``{param}`` pattern), registered at once.

        Broadcast (``group=None``) starts after ``last_id`` (None or malformed: new messages
        only). A group is created on first use, starting after ``last_id``; later it keeps its
        own position.
        """
        self._check_running("subscribe")
        pattern = TopicPattern(topic)
        if group is not None and (not isinstance(group, str) or not group):
            raise ValueError(f"group must be a non-empty string or None, got {group!r}")
        start = parse_id(last_id) or self._clock.last
        sub = _Subscription(self, pattern, group, start)
        self._subs.add(sub)
        self._watchers.clear()
        sub.discover()
        return sub

    async def ack(self, message: Message) -> None:
        """Mark a group message as handled; a broadcast message needs no ack."""
        if message.group is None:
            return
        topic = self._topics.get(message.topic)
        group = topic.groups.get(message.group) if topic is not None else None
        if group is not None:
            group.pending.pop(message.id, None)

    def _check_running(self, action: str) -> None:
        if self._state is not _State.RUNNING:
            raise BrokerNotRunning(
                f"cannot {action}: the MemoryBroker is {self._state.value}; call "
                "`await broker.start()` first (a StreamRouter does it in the app's lifespan)"
            )

    def _topic(self, name: str) -> _Topic:
        topic = self._topics.get(name)
        if topic is None:
            topic = self._topics[name] = _Topic(name, self.history)
            self._topic_list.append(topic)
        return topic

    def _forget(self, sub: _Subscription) -> None:
        self._subs.discard(sub)
        self._watchers.clear()


class _Subscription:
    """One subscriber: an async iterator of `Message`; ``aclose()`` ends it."""

    def __init__(
        self, broker: MemoryBroker, pattern: TopicPattern, group: str | None, start: tuple[int, int]
    ) -> None:
        self.broker = broker
        self.pattern = pattern
        self.group = group
        self.start = start
        self.cursor = start
        self.wake = anyio.Event()
        self._epoch = broker._epoch
        self._closed = False
        self._topics: list[_Topic] = []
        self._seen = 0  # how many of broker._topic_list were examined
        self._batch: deque[Message] = deque()

    def __aiter__(self) -> _Subscription:
        return self

    async def __anext__(self) -> Message:
        while True:
            if self._batch:
                return self._batch.popleft()
            broker = self.broker
            if self._closed or self._epoch != broker._epoch or broker._state is not _State.RUNNING:
                raise StopAsyncIteration
            if self.wake.is_set():  # a fresh event before filling: no publish is missed
                self.wake = anyio.Event()
            self.discover()
            wait = self._fill_broadcast() if self.group is None else self._fill_group()
            if self._batch:
                continue
            if wait == math.inf:  # no timer scope per wait when nothing is due
                await self.wake.wait()
            else:
                with anyio.move_on_after(wait):
                    await self.wake.wait()

    async def aclose(self) -> None:
        """Stop this subscription; group messages it did not ack are redelivered later."""
        self._closed = True
        self._batch.clear()
        self.broker._forget(self)
        self.wake.set()

    def discover(self) -> None:
        """Add the topics created since the last look that this subscription matches."""
        if not self.pattern.is_pattern:
            if not self._topics:
                self._topics.append(self.broker._topic(self.pattern.pattern))
                self._group_state(self._topics[0])
            return
        topics = self.broker._topic_list
        for topic in topics[self._seen :]:
            if self.pattern.matches(topic.name):
                self._topics.append(topic)
                self._group_state(topic)
        self._seen = len(topics)

    def _group_state(self, topic: _Topic) -> _Group | None:
        if self.group is None:
            return None
        state = topic.groups.get(self.group)
        if state is None:
            state = topic.groups[self.group] = _Group(self.start)
        return state

    def _fill_broadcast(self) -> float:
        per_topic = [topic.after(self.cursor, _BATCH) for topic in self._topics]
        for topic in self._topics:
            _warn_if_skipped(topic, self.cursor, "a broadcast subscriber")
        entries: Iterable[_Entry]
        if len(per_topic) == 1:
            entries = per_topic[0]
        else:
            entries = islice(heapq.merge(*per_topic, key=_key), _BATCH)
        for entry in entries:
            self._batch.append(entry.message)
            self.cursor = entry.key
        return math.inf

    def _fill_group(self) -> float:
        assert self.group is not None
        now = time.monotonic()
        earliest = math.inf
        for topic in self._topics:
            state = topic.groups[self.group]
            for message_id, pending in state.pending.items():
                if pending.deadline > now:
                    earliest = min(earliest, pending.deadline)
                    break
                del state.pending[message_id]
                self._deliver(state, pending.entry, pending.attempt + 1, now)
                return 0.0
        best: tuple[_Group, _Entry] | None = None
        for topic in self._topics:
            state = topic.groups[self.group]
            _warn_if_skipped(topic, state.cursor, f"group {self.group!r}")
            found = topic.after(state.cursor, 1)
            if found and (best is None or found[0].key < best[1].key):
                best = (state, found[0])
        if best is not None:
            best[0].cursor = best[1].key
            self._deliver(best[0], best[1], 1, now)
            return 0.0
        return earliest - now

    def _deliver(self, state: _Group, entry: _Entry, attempt: int, now: float) -> None:
        original = entry.message
        state.pending[original.id] = _Pending(entry, attempt, now + self.broker.claim_idle)
        self._batch.append(
            Message(
                id=original.id,
                topic=original.topic,
                body=original.body,
                headers=dict(original.headers),
                group=self.group,
                attempt=attempt,
            )
        )


def _warn_if_skipped(topic: _Topic, cursor: tuple[int, int], who: str) -> None:
    if cursor < topic.trimmed and topic.entries:
        logger.warning(
            "%s of topic %r fell behind its history of %d messages: skipping from %s to the "
            "oldest retained message %s",
            who,
            topic.name,
            topic.entries.maxlen,
            format_id(cursor),
            topic.entries[0].message.id,
        )
