"""Before: an sse-starlette stream."""

import json
from collections.abc import AsyncIterator

from fastapi import FastAPI, Request
from sse_starlette import EventSourceResponse

app = FastAPI()


async def scores(request: Request, after: int) -> AsyncIterator[dict[str, str]]:
    for n in range(after + 1, 4):
        if await request.is_disconnected():  # polled by hand
            break
        yield {"event": "score", "id": str(n), "data": json.dumps({"goal": n})}


@app.get("/scores")
async def stream_scores(request: Request) -> EventSourceResponse:
    last_id = request.headers.get("last-event-id", "0")
    after = int(last_id) if last_id.isdigit() else 0
    return EventSourceResponse(scores(request, after), ping=15, send_timeout=5)
