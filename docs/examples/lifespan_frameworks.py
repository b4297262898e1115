"""Any ASGI framework can be mounted: here Litestar and a FastStream broker app on Redis."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from faststream.asgi import AsgiFastStream
from faststream.redis import RedisBroker
from litestar import Litestar, get

from fastapi_streamkit import mount

events: list[str] = []


@asynccontextmanager
async def litestar_lifespan(app: Litestar) -> AsyncIterator[None]:
    events.append("litestar: started")
    yield
    events.append("litestar: stopped")


@get("/ping")
async def ping() -> dict[str, str]:
    return {"pong": "litestar"}


litestar_app = Litestar(route_handlers=[ping], lifespan=[litestar_lifespan])

broker = RedisBroker(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))


@broker.subscriber("docs-lifespan-orders")
async def on_order(order: str) -> None:
    events.append(f"faststream: got {order}")


stream_app = AsgiFastStream(
    broker,
    on_startup=[lambda: events.append("faststream: on_startup")],
    after_shutdown=[lambda: events.append("faststream: after_shutdown")],
)

app = FastAPI()
mount(app, "/litestar", litestar_app, name="litestar")
mount(app, "/stream", stream_app, shutdown_timeout=10)


@app.post("/orders/{order}")
async def place(order: str) -> dict[str, str]:
    await broker.publish(order, "docs-lifespan-orders")
    return {"placed": order}
