"""Compose your own lifespan from parts: hooks, a context manager and sub-apps, in order."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from starlette.applications import Starlette

from fastapi_streamkit import LifespanMount
from fastapi_streamkit.lifespan import CallbackPart, ContextPart, run_parts

events: list[str] = []


@asynccontextmanager
async def database() -> AsyncIterator[str]:
    events.append("database: connected")
    yield "postgres://db/app"
    events.append("database: disconnected")


@asynccontextmanager
async def search_lifespan(app: Starlette) -> AsyncIterator[None]:
    events.append("search: started")
    yield
    events.append("search: stopped")


search = LifespanMount("/search", Starlette(lifespan=search_lifespan), name="search")


async def warm_caches() -> None:
    events.append("caches: warm")


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, str]]:
    db = ContextPart("database", database())
    hooks = CallbackPart(
        "cache hooks", startup=warm_caches, shutdown=lambda: events.append("caches: flushed")
    )
    # start in order; on a failure stop what started (really), in reverse; stop all in reverse
    async with run_parts([db, search, hooks]):
        yield {"dsn": db.value or ""}


app = FastAPI(lifespan=lifespan)
app.router.routes.append(search)  # a LifespanMount is a Starlette Mount: route into it


@app.get("/dsn")
async def dsn(request: Request) -> dict[str, str]:
    return {"dsn": request.state.dsn}  # the state the lifespan yielded
