"""Notes: a form posts a note, a subscriber validates and handles it, the page sees the result.

``POST /api/notes``        publishes the JSON it gets to ``notes``, unchecked: checking is the
                           subscriber's job, so invalid input shows the dead-letter path.
subscriber ``notes``       validates a `Note` (pydantic), masks words with a ``Depends``
                           dependency, and its return value is published to ``events``.
``notes.dlq``              where the router puts a note that failed, with an ``x-error`` header.
``GET /api/events``        `EventStream` of ``events``: each broker message as ``id:``/``data:``;
                           a browser reconnecting sends ``Last-Event-ID`` and misses nothing.
``GET /api/dead-letters``  `EventStream` of ``notes.dlq``: each body with its ``x-error``.

A first connection (no ``Last-Event-ID``) starts with the history the broker keeps: a page
that connects sees the recent events, and a page that has seen none yet still has nothing
to miss when it reconnects (the browser sends no ``Last-Event-ID`` until it got an ``id:``).
"""

from __future__ import annotations

import datetime
import json
from collections.abc import AsyncIterator, Iterable
from contextlib import aclosing
from typing import Annotated, Any, Literal

from fastapi import Body, Depends, Query
from pydantic import BaseModel, Field

from fastapi_streamkit import EventStream, LastEventID, ServerSentEvent, StreamRouter
from fastapi_streamkit.brokers import Broker

NOTES = "notes"
EVENTS = "events"
DEAD_LETTERS = f"{NOTES}.dlq"
OLDEST = "0"  # an id older than any message: the broker starts at the oldest it keeps

Retry = Annotated[
    int, Query(ge=100, le=60_000, description="milliseconds EventSource waits to reconnect")
]


class Note(BaseModel):
    author: str = Field(min_length=1, max_length=40)
    text: str = Field(min_length=1, max_length=280)


class NoteEvent(BaseModel):
    kind: Literal["note"] = "note"
    author: str
    text: str
    words: int
    at: datetime.datetime


class Moderator:
    """Masks blocked words. A dependency: tests swap it with ``app.dependency_overrides``."""

    def __init__(self, blocked: Iterable[str]) -> None:
        self.blocked = frozenset(word.lower() for word in blocked)

    def clean(self, text: str) -> str:
        return " ".join(
            "*" * len(word) if word.strip(".,;:!?").lower() in self.blocked else word
            for word in text.split()
        )


def moderator() -> Moderator:
    return Moderator(["spam", "darn"])


async def dead_letter_events(broker: Broker, last_id: str) -> AsyncIterator[ServerSentEvent]:
    """Each dead letter as a ``dead-letter`` event: its body and the router's ``x-error``."""
    # aclosing: when the page goes away, EventStream closes this generator, which closes the
    # subscription at once (every broker subscription has ``aclose()``).
    async with aclosing(broker.subscribe(DEAD_LETTERS, last_id=last_id)) as letters:
        async for letter in letters:
            error = json.loads(letter.headers.get("x-error", "{}"))
            body = letter.body.decode("utf-8", "replace")
            yield ServerSentEvent({"body": body, "error": error}, event="dead-letter", id=letter.id)


def add_notes(router: StreamRouter) -> None:
    """The notes endpoint, its subscriber and the two event streams the page reads."""

    @router.post("/api/notes", status_code=202)
    async def post_note(note: Annotated[dict[str, Any], Body()]) -> dict[str, str]:
        """Queue a note for the subscriber; answers with the message id at once."""
        return {"id": await router.publish(NOTES, note)}

    @router.subscriber(NOTES)
    @router.publisher(EVENTS)
    async def handle_note(
        note: Note, moderation: Annotated[Moderator, Depends(moderator)]
    ) -> NoteEvent:
        """A valid note becomes an event; an invalid one goes to ``notes.dlq``, not retried."""
        text = moderation.clean(note.text)
        now = datetime.datetime.now(datetime.UTC)
        return NoteEvent(author=note.author, text=text, words=len(text.split()), at=now)

    @router.get("/api/events", response_class=EventStream)
    async def events(last_event_id: LastEventID, retry: Retry = 1000) -> EventStream:
        """What the handlers published, after ``Last-Event-ID`` (else the kept history)."""
        published = router.broker.subscribe(EVENTS, last_id=last_event_id or OLDEST)
        return EventStream(published, retry=retry)

    @router.get("/api/dead-letters", response_class=EventStream)
    async def dead_letters(last_event_id: LastEventID, retry: Retry = 1000) -> EventStream:
        """The notes that failed, with the reason, after ``Last-Event-ID`` (else the history)."""
        letters = dead_letter_events(router.broker, last_event_id or OLDEST)
        return EventStream(letters, retry=retry)
