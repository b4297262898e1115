"""A client that leaves: the source is closed at once, so its ``finally`` runs."""

from collections.abc import AsyncIterator

import anyio
from fastapi import FastAPI, Request

from fastapi_streamkit import EventStream

app = FastAPI()
app.state.closed = []


async def updates(request: Request, user: str) -> AsyncIterator[dict[str, str]]:
    try:
        yield {"hello": user}
        await anyio.sleep_forever()  # idle: waiting for the next update that never comes
        yield {"never": "sent"}
    finally:
        # Runs within milliseconds of the disconnect, not at garbage collection:
        # release the subscription, the database cursor, the lock...
        request.app.state.closed.append(user)


@app.get("/updates/{user}")
async def stream_updates(request: Request, user: str) -> EventStream:
    return EventStream(updates(request, user))
