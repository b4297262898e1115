"""Driving apps and subscriptions by hand in tests, every wait bounded."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import anyio
from starlette.types import Message as ASGIMessage

from fastapi_streamkit.brokers import Message


@contextlib.asynccontextmanager
async def running(app: Any, *, within: float = 5.0) -> AsyncIterator[list[ASGIMessage]]:
    """Drive ``app``'s lifespan over ASGI as a server does; yield the replies it sent."""
    to_app, app_inbox = anyio.create_memory_object_stream[ASGIMessage](1)
    from_app, replies = anyio.create_memory_object_stream[ASGIMessage](10)
    sent: list[ASGIMessage] = []
    scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": {}}
    with to_app, app_inbox, from_app, replies:
        async with anyio.create_task_group() as tg:
            tg.start_soon(app, scope, app_inbox.receive, from_app.send)
            with anyio.fail_after(within):
                await to_app.send({"type": "lifespan.startup"})
                sent.append(await replies.receive())
            assert sent[-1]["type"] == "lifespan.startup.complete", sent[-1]
            yield sent
            with anyio.fail_after(within):
                await to_app.send({"type": "lifespan.shutdown"})
                sent.append(await replies.receive())
            assert sent[-1]["type"] == "lifespan.shutdown.complete", sent[-1]


async def take(sub: AsyncIterator[Message], count: int, within: float = 5.0) -> list[Message]:
    """The next ``count`` messages of ``sub``, failing after ``within`` seconds."""
    got: list[Message] = []
    with anyio.fail_after(within):
        while len(got) < count:
            got.append(await anext(sub))
    return got
