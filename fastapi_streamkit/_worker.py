"""Worker mode: run an ASGI app's lifespan (brokers, consumers, hooks) without serving HTTP.

`import_app` finds ``module:attr`` as uvicorn does; `run_worker` sends ``lifespan.startup``,
waits for SIGTERM/SIGINT, then sends ``lifespan.shutdown`` and waits for it (bounded), so
in-flight handlers finish. A second signal stops at once.
"""

from __future__ import annotations

import enum
import importlib
import logging
import os
import signal
import sys
import traceback
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import anyio

from .exceptions import UsageError

__all__ = ["WorkerState", "import_app", "run_worker"]

logger = logging.getLogger("fastapi_streamkit.worker")

ASGIMessage = MutableMapping[str, Any]
ASGIApp = Callable[
    [ASGIMessage, Callable[[], Awaitable[ASGIMessage]], Callable[[ASGIMessage], Awaitable[None]]],
    Awaitable[None],
]


class WorkerState(enum.Enum):
    """Where a worker is in its life."""

    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"
    FAILED = "failed"


def import_app(target: str, app_dir: str = ".") -> ASGIApp:
    """The object ``module:attr`` names (``attr`` may be dotted), importing from ``app_dir``."""
    module_name, _, attrs = target.partition(":")
    if not module_name or not attrs:
        raise UsageError(
            f"expected the app as 'module:attribute' (e.g. 'main:app'), got {target!r}"
        )
    directory = os.path.abspath(app_dir)
    if directory not in sys.path:
        sys.path.insert(0, directory)
    try:
        found: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is None or not module_name.startswith(exc.name):
            raise  # the module exists but one of its own imports is missing
        raise UsageError(
            f"cannot import module {module_name!r} from {directory}: run the command in the "
            "directory holding it, or pass --app-dir"
        ) from exc
    for attr in attrs.split("."):
        try:
            found = getattr(found, attr)
        except AttributeError:
            raise UsageError(f"module {module_name!r} has no attribute {attrs!r}") from None
    if not callable(found):
        raise UsageError(f"{target!r} is a {type(found).__name__}, not an ASGI application")
    app: ASGIApp = found
    return app


class _Lifespan:
    """One lifespan cycle of an ASGI app, driven by hand."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.state = WorkerState.STARTING
        self.error = ""
        self.changed = anyio.Event()  # set on every reply, and when the app returns
        self.app_done = False
        self._send, self._receive = anyio.create_memory_object_stream[ASGIMessage](2)

    async def run(self) -> None:
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}}
        try:
            await self.app({**scope, "state": {}}, self._receive.receive, self._reply)
        except Exception:
            self.error = self.error or traceback.format_exc()
        finally:
            self.app_done = True
            self.changed.set()

    async def request(self, kind: str) -> None:
        self.changed = anyio.Event()
        await self._send.send({"type": f"lifespan.{kind}"})

    async def _reply(self, message: ASGIMessage) -> None:
        kind = message.get("type")
        if kind in ("lifespan.startup.complete", "lifespan.shutdown.complete"):
            self.state = WorkerState.RUNNING if "startup" in kind else WorkerState.STOPPED
        elif kind in ("lifespan.startup.failed", "lifespan.shutdown.failed"):
            self.state = WorkerState.FAILED
            self.error = str(message.get("message", "")) or f"the app sent {kind}"
        else:
            raise UsageError(f"unexpected ASGI message {kind!r} during the lifespan")
        self.changed.set()


async def run_worker(app: ASGIApp, *, shutdown_timeout: float = 30.0) -> int:
    """Run ``app``'s lifespan until SIGTERM/SIGINT; the process exit code (0: clean stop)."""
    lifespan = _Lifespan(app)
    stop = anyio.Event()
    code = 1  # stays 1 when a second signal cancels everything
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with anyio.create_task_group() as tg:

            async def watch_signals() -> None:
                async for signum in signals:
                    if stop.is_set():
                        logger.error("second %s: stopping now", signal.Signals(signum).name)
                        tg.cancel_scope.cancel()
                        return
                    logger.info("%s received: shutting down", signal.Signals(signum).name)
                    stop.set()
                    lifespan.changed.set()

            tg.start_soon(watch_signals)
            tg.start_soon(lifespan.run)
            code = await _drive(lifespan, stop, shutdown_timeout)
            tg.cancel_scope.cancel()
    return code


async def _drive(lifespan: _Lifespan, stop: anyio.Event, shutdown_timeout: float) -> int:
    await lifespan.request("startup")
    await lifespan.changed.wait()
    if lifespan.state is not WorkerState.RUNNING:
        if stop.is_set() and not lifespan.app_done:
            logger.error("stopped by a signal before the app finished starting")
        else:
            logger.error("the app failed to start:\n%s", lifespan.error or _no_lifespan())
        return 1
    logger.info("worker running (no HTTP); send SIGTERM or SIGINT to stop")
    lifespan.changed = anyio.Event()
    while not stop.is_set() and not lifespan.app_done:
        await lifespan.changed.wait()
        lifespan.changed = anyio.Event()
    if lifespan.app_done:
        logger.error("the app's lifespan ended on its own:\n%s", lifespan.error or "no error")
        return 1
    lifespan.state = WorkerState.STOPPING
    await lifespan.request("shutdown")
    with anyio.move_on_after(shutdown_timeout) as scope:
        while lifespan.state is WorkerState.STOPPING and not lifespan.app_done:
            await lifespan.changed.wait()
            lifespan.changed = anyio.Event()
    if scope.cancelled_caught:
        logger.error("shutdown did not finish within %ss; stopping anyway", shutdown_timeout)
        return 1
    if lifespan.state is not WorkerState.STOPPED:
        logger.error("the app failed to shut down cleanly:\n%s", lifespan.error or "no reply")
        return 1
    logger.info("worker stopped")
    return 0


def _no_lifespan() -> str:
    return "it returned without answering lifespan.startup: does it support the ASGI lifespan?"
