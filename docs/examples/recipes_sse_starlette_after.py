"""After: the same stream with fastapi_streamkit's `EventStream`."""

from collections.abc import AsyncIterator

from fastapi import FastAPI

from fastapi_streamkit import EventStream, LastEventID, ServerSentEvent

app = FastAPI()


async def scores(after: int) -> AsyncIterator[ServerSentEvent]:
    for n in range(after + 1, 4):  # a disconnect closes the generator: no polling
        yield ServerSentEvent({"goal": n}, event="score", id=str(n))  # data JSON-encoded


@app.get("/scores")
async def stream_scores(last_event_id: LastEventID) -> EventStream:
    after = int(last_event_id) if last_event_id and last_event_id.isdigit() else 0
    return EventStream(scores(after), ping_interval=15, send_timeout=5)
