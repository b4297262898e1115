"""Graceful shutdown: open streams end cleanly, so the server can exit.

Under ``uvicorn app:app`` nothing is needed: SIGTERM / Ctrl+C end the open streams. When the
server runs in a thread (test fixtures, embedded servers) or is driven by hand, call
``request_shutdown()`` before asking the server to exit.
"""

import threading
from collections.abc import AsyncIterator

import anyio
import uvicorn
from fastapi import FastAPI, Request

from fastapi_streamkit import EventStream, request_shutdown

app = FastAPI()
app.state.finished = []


async def heartbeat(request: Request) -> AsyncIterator[dict[str, int]]:
    n = 0
    try:
        while True:
            n += 1
            yield {"beat": n}
            await anyio.sleep(0.05)
    finally:
        request.app.state.finished.append(n)


@app.get("/heartbeat")
async def stream_heartbeat(request: Request) -> EventStream:
    return EventStream(heartbeat(request))


def serve_in_thread(port: int) -> tuple[uvicorn.Server, threading.Thread]:
    """Start uvicorn in a thread (no signal handlers there: we stop it by hand)."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    return server, thread


def stop(server: uvicorn.Server, thread: threading.Thread) -> None:
    """End the open streams (each sends its last chunk), then let uvicorn exit."""
    request_shutdown()
    server.should_exit = True
    thread.join(10)
