"""Lifespan hooks: when they run around the broker and mounted sub-apps, and an
``after_startup`` hook that publishes a message the app then handles.

Run it: ``python docs/examples/messages_hooks.py``
"""

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.testclient import TestClient

from fastapi_streamkit import StreamMessage, StreamRouter

events: list[str] = []
router = StreamRouter(drain_timeout=5.0)  # shutdown waits up to 5 s for running handlers


@asynccontextmanager
async def admin_lifespan(app: FastAPI) -> AsyncIterator[None]:
    events.append("admin sub-app started")
    yield
    events.append("admin sub-app stopped")


router.mount("/admin", FastAPI(lifespan=admin_lifespan), name="admin")


@router.before_startup
def connect_database() -> None:  # sync or async, no arguments
    events.append("before_startup")


@router.after_startup
async def announce() -> None:  # the broker runs and the consumers listen: publish away
    events.append("after_startup")
    await router.publish("app.started", "hello")


@router.subscriber("app.started")
async def on_started(message: StreamMessage) -> None:
    events.append(f"handled {(await message.body()).decode()!r}")


@router.before_shutdown
async def stop_accepting() -> None:
    events.append("before_shutdown")


@router.after_shutdown
def close_database() -> None:
    events.append("after_shutdown")


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    events.append("app lifespan started")
    yield
    events.append("app lifespan stopped")


app = FastAPI(lifespan=lifespan)
app.include_router(router)


def main() -> None:
    with TestClient(app):
        deadline = time.monotonic() + 5
        while "handled 'hello'" not in events and time.monotonic() < deadline:
            time.sleep(0.01)  # the message is handled in the background
    print("\n".join(events))


if __name__ == "__main__":
    main()
