"""A sub-app that fails to start: what started is shut down for real, the server is told why."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette

from fastapi_streamkit import mount

events: list[str] = []


def service(name: str, *, broken: bool = False) -> Starlette:
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        events.append(f"{name}: start")
        if broken:
            raise ConnectionError(f"{name}: cannot reach its database")
        yield
        events.append(f"{name}: stop")  # no try/finally needed: shutdown is a real one

    return Starlette(lifespan=lifespan)


app = Starlette()
mount(app, "/search", service("search"), name="search")
mount(app, "/billing", service("billing", broken=True), name="billing")
mount(app, "/reports", service("reports"), name="reports")  # never starts

# Under `uvicorn docs.examples.lifespan_failure:app --lifespan on` the server logs
#   LifespanStartupError: sub-app 'billing' (Starlette) mounted at '/billing' failed to start:
#   ... ConnectionError: billing: cannot reach its database
# and exits with a non-zero status; events == ["search: start", "billing: start",
# "search: stop"].
