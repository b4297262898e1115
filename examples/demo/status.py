"""A sub-app with its own lifespan, mounted with ``router.mount("/status", status_app())``.

Starlette's ``app.mount`` would never run this lifespan, and ``request.state.started_at``
would not exist; `StreamRouter.mount` (or `fastapi_streamkit.mount`) runs it.
"""

from __future__ import annotations

import datetime
import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from pydantic import BaseModel


class Status(BaseModel):
    lifespan: str
    started_at: datetime.datetime
    uptime: float
    requests: int


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
    """Runs when the demo starts: the state it yields reaches this sub-app's requests only."""
    yield {"started_at": datetime.datetime.now(datetime.UTC), "counter": itertools.count(1)}


def status_app() -> FastAPI:
    """``GET /status/``: when this sub-app's lifespan started and how often it was asked."""
    app = FastAPI(title="status sub-app", lifespan=lifespan)

    @app.get("/")
    async def status(request: Request) -> Status:
        started: datetime.datetime = request.state.started_at
        uptime = datetime.datetime.now(datetime.UTC) - started
        return Status(
            lifespan="running",
            started_at=started,
            uptime=round(uptime.total_seconds(), 1),
            requests=next(request.state.counter),
        )

    return app
