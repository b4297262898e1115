"""Mount sub-apps whose lifespans run: each gets its own state, url_for reaches into them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from fastapi_streamkit import mount

events: list[str] = []  # what ran, in order (the docs' test reads it)


class Pool:
    """Stands in for a database pool: opened at startup, closed at shutdown."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.open = True

    async def close(self) -> None:
        self.open = False


@asynccontextmanager
async def admin_lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
    pool = Pool("admin-db")
    events.append("admin: pool opened")
    yield {"pool": pool}  # reaches the admin app's requests only
    await pool.close()
    events.append("admin: pool closed")


admin = FastAPI(lifespan=admin_lifespan)


@admin.get("/users", name="users")
async def users(request: Request) -> dict[str, Any]:
    pool: Pool = request.state.pool
    return {"pool": pool.name, "open": pool.open}


@asynccontextmanager
async def metrics_lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
    events.append("metrics: started")
    yield {"counter": {"hits": 0}}
    events.append("metrics: stopped")


async def hits(request: Request) -> PlainTextResponse:
    request.state.counter["hits"] += 1
    return PlainTextResponse(str(request.state.counter["hits"]))


metrics = Starlette(routes=[Route("/hits", hits)], lifespan=metrics_lifespan)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    events.append("host: started")
    yield
    events.append("host: stopped")


app = FastAPI(lifespan=lifespan)
mount(app, "/admin", admin, name="admin")  # starts after the host's lifespan, in call order
mount(app, "/metrics", metrics, name="metrics", startup_timeout=5, shutdown_timeout=5)


@app.get("/")
async def index(request: Request) -> dict[str, str]:
    return {"users": str(request.url_for("admin:users"))}  # "<mount name>:<route name>"
