"""The demo application: one `StreamRouter` carrying every part, and the page that shows them."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from fastapi_streamkit import MemoryBroker, StreamRouter, request_shutdown
from fastapi_streamkit.brokers import Broker

from .chat import add_chat
from .notes import add_notes
from .status import status_app

STATIC = Path(__file__).parent / "static"


HISTORY = 200  # messages kept per topic: what a page that connects first sees


def make_broker() -> Broker:
    """A `RedisBroker` when ``REDIS_URL`` is set (several workers share it), else in memory."""
    url = os.environ.get("REDIS_URL")
    if not url:
        return MemoryBroker(history=HISTORY)
    from fastapi_streamkit import RedisBroker  # needs the [redis] extra

    prefix = os.environ.get("DEMO_REDIS_PREFIX", "streamkit-demo:")
    return RedisBroker(url, history=HISTORY, prefix=prefix)


def add_admin(router: StreamRouter) -> None:
    """What the page's header shows, and a button that makes the server drop its streams."""

    @router.get("/api/info")
    async def info() -> dict[str, Any]:
        """The broker in use and this worker's process id."""
        return {"broker": type(router.broker).__name__, "pid": os.getpid()}

    @router.post("/api/drop-streams")
    async def drop_streams() -> dict[str, str]:
        """End every open stream of this worker, as a restart would: the page reconnects."""
        request_shutdown()
        return {"dropped": "every stream open in this worker"}


def create_app(broker: Broker | None = None) -> FastAPI:
    """The demo: notes, events, dead letters, chat, a mounted sub-app, AsyncAPI and health."""
    router = StreamRouter(
        broker=make_broker() if broker is None else broker,
        asyncapi_path="/asyncapi",  # the page; the document is at /asyncapi.json
        health_path="/health",  # 204 while the broker answers, 503 otherwise
    )
    add_notes(router)
    add_chat(router)
    add_admin(router)
    router.mount("/status", status_app(), name="status")  # its lifespan runs in the router's

    app = FastAPI(title="fastapi_streamkit demo")
    app.include_router(router)  # the broker, the subscriber and the sub-app start with the app
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    return app
