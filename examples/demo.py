"""The demo that ``make demo`` starts: ``uvicorn examples.demo:app`` on http://127.0.0.1:8000.

A page (``static/index.html``) made of panels, each fed by one stream of this app:
  ``clock``    an `EventStream` of ``tick`` events, resumable with ``Last-Event-ID``;
  ``numbers``  a `JSONLines` stream read with ``fetch()`` and a stream reader.
Each stream lives on one `StreamRouter` (so HEAD works too); a new panel is a router endpoint
plus a ``data-panel`` section and its function in ``static/app.js``.
"""

from __future__ import annotations

import datetime
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any

import anyio
from fastapi import FastAPI, Query
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from fastapi_streamkit import EventStream, JSONLines, LastEventID, ServerSentEvent, StreamRouter

STATIC = Path(__file__).parent / "static"

Interval = Annotated[float, Query(ge=0.0, le=60.0, description="seconds between items")]


async def ticks(first: int, interval: float) -> AsyncIterator[ServerSentEvent]:
    """``tick`` events numbered from ``first``: the number is the SSE id, so clients resume."""
    n = first
    while True:
        now = datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds")
        yield ServerSentEvent({"n": n, "at": now}, event="tick", id=str(n))
        n += 1
        await anyio.sleep(interval)


async def numbers(count: int, interval: float) -> AsyncIterator[dict[str, int]]:
    """``count`` small JSON documents, ``interval`` seconds apart."""
    for n in range(1, count + 1):
        yield {"n": n, "square": n * n}
        if interval:
            await anyio.sleep(interval)


def _resume_from(last_event_id: str | None) -> int:
    """The tick after the last one the client saw; a malformed id starts over."""
    if last_event_id is not None and last_event_id.isdigit():
        return int(last_event_id) + 1
    return 1


def streams_router() -> StreamRouter:
    """The streams the page shows; the dashboard adds its feeds here."""
    router = StreamRouter(prefix="/streams", tags=["streams"])

    @router.get("/clock", response_class=EventStream)
    async def clock(last_event_id: LastEventID, interval: Interval = 1.0) -> EventStream:
        """Server-Sent Events: a ``tick`` per ``interval``; reconnects resume after the last id."""
        return EventStream(ticks(_resume_from(last_event_id), interval), retry=1000)

    @router.get("/numbers", response_class=JSONLines)
    async def numbers_lines(
        count: Annotated[int, Query(ge=0, le=10_000)] = 10, interval: Interval = 0.2
    ) -> JSONLines:
        """JSON Lines: ``count`` documents ``{"n", "square"}``, ``interval`` seconds apart."""
        return JSONLines(numbers(count, interval))

    return router


def create_app() -> FastAPI:
    """The demo application: the page, its static files and the streams."""
    app = FastAPI(title="fastapi_streamkit demo")
    app.include_router(streams_router())
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    async def page() -> Any:
        return FileResponse(STATIC / "index.html")

    return app


app = create_app()
