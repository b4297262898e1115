"""A client that stops reading: ``send_timeout`` aborts the stream and closes the source."""

from collections.abc import AsyncIterator

from fastapi import FastAPI, Request

from fastapi_streamkit import Stream

app = FastAPI()
app.state.aborted = []


async def telemetry(request: Request) -> AsyncIterator[bytes]:
    sent = 0
    try:
        while True:
            yield b"x" * 65536  # data ready all the time: only the client can slow us down
            sent += 1
    finally:
        request.app.state.aborted.append(sent)


@app.get("/telemetry")
async def stream_telemetry(request: Request) -> Stream:
    # A send that blocks longer than 2 s (the client's buffers are full) ends the stream:
    # the source is closed and the connection aborted, so a stuck client cannot pin memory.
    return Stream(telemetry(request), media_type="application/octet-stream", send_timeout=2.0)
