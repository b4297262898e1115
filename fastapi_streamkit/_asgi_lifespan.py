"""Drive one ASGI app's lifespan over the ASGI lifespan protocol, in its own task.

`SubAppLifespan` plays the server's side of the protocol for one app: it sends
``lifespan.startup``, waits for ``lifespan.startup.complete``/``.failed``, and later sends
``lifespan.shutdown`` and waits for ``lifespan.shutdown.complete``/``.failed``. The app runs in
a task of a task group entered by `startup()` and left by `shutdown()`, so both must be called
from the same task, in last-in first-out order with other such parts (`run_parts` does).

As the ASGI spec says, an app that raises or returns before answering ``lifespan.startup``
does not support lifespan: that is tolerated (logged once, at debug level).
"""

from __future__ import annotations

import contextlib
import enum
import logging
import traceback
from typing import Any

import anyio
from starlette.types import ASGIApp, Message

from .exceptions import LifespanTimeoutError, SubAppLifespanError

__all__ = ["LifespanPhase", "SubAppLifespan"]

logger = logging.getLogger("fastapi_streamkit.lifespan")

#: Seconds an app may take to return after it answered ``*.failed`` before it is cancelled.
_EXIT_GRACE = 5.0

_REPLIES = {
    "lifespan.startup": ("lifespan.startup.complete", "lifespan.startup.failed"),
    "lifespan.shutdown": ("lifespan.shutdown.complete", "lifespan.shutdown.failed"),
}


class LifespanPhase(enum.Enum):
    """Where one sub-app's lifespan stands; `IDLE` again after each shutdown."""

    IDLE = "idle"
    STARTING = "starting"
    STARTED = "started"
    UNSUPPORTED = "unsupported"
    STOPPING = "stopping"


class _Run:
    """One lifespan cycle of an app: the messages exchanged, its task's outcome, its state."""

    def __init__(self) -> None:
        self.request: Message | None = None  # the next event for the app's receive()
        self.requested = anyio.Event()
        self.reply: Message | None = None  # the app's answer to the current event
        self.replied = anyio.Event()
        self.state: dict[str, Any] = {}
        self.error: BaseException | None = None
        self.violation: str | None = None
        self.crash: str | None = None
        self.started = False  # the app answered lifespan.startup.complete
        self.awaiting: str | None = None
        self.finished = anyio.Event()
        self.stack = contextlib.AsyncExitStack()
        self.cancel_scope = anyio.CancelScope()


class SubAppLifespan:
    """Runs one ASGI app's lifespan; re-entrant: nested starts count, the outermost stop stops."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        label: str,
        startup_timeout: float | None = None,
        shutdown_timeout: float | None = None,
    ) -> None:
        self.app = app
        self.label = label
        self.startup_timeout = startup_timeout
        self.shutdown_timeout = shutdown_timeout
        self.phase = LifespanPhase.IDLE
        self._users = 0
        self._run: _Run | None = None
        self._logged_unsupported = False

    @property
    def state(self) -> dict[str, Any] | None:
        """The state the app's lifespan filled in, while it is started; else None."""
        run = self._run
        return run.state if run is not None and self.phase is LifespanPhase.STARTED else None

    async def startup(self) -> None:
        """Start the app's lifespan (only the first of nested calls does anything)."""
        self._users += 1
        if self._users > 1:
            return
        try:
            await self._start()
        except BaseException:
            self._users = 0
            raise

    async def shutdown(self) -> None:
        """Shut the app's lifespan down for real when the last starter stops it."""
        if self._users == 0:
            return
        self._users -= 1
        if self._users == 0:
            await self._stop()

    async def _start(self) -> None:
        if self.phase is not LifespanPhase.IDLE:
            raise SubAppLifespanError(f"{self.label}: startup while {self.phase.value}")
        run = self._run = _Run()
        self.phase = LifespanPhase.STARTING
        try:
            tg = await run.stack.enter_async_context(anyio.create_task_group())
            tg.start_soon(self._drive, run)
            reply = await self._exchange(run, "lifespan.startup", self.startup_timeout)
        except BaseException:
            await self._close(run, cancel=True)
            raise
        if reply is not None and reply["type"] == "lifespan.startup.complete":
            self.phase = LifespanPhase.STARTED
            return
        await self._close(run, cancel=False)
        if reply is not None:
            raise SubAppLifespanError(_failed(self.label, "startup", reply))
        self._unsupported(run)

    async def _stop(self) -> None:
        run = self._run
        if run is None:
            self.phase = LifespanPhase.IDLE
            return
        self.phase = LifespanPhase.STOPPING
        if run.finished.is_set():  # nothing left to shut down
            await self._close(run, cancel=False)
            if _failed_run(run):
                raise SubAppLifespanError(
                    f"{self.label}: its lifespan ended before shutdown{_outcome(run)}"
                )
            return
        try:
            with anyio.CancelScope(shield=True):
                reply = await self._exchange(run, "lifespan.shutdown", self.shutdown_timeout)
        except BaseException:
            await self._close(run, cancel=True)
            raise
        await self._close(run, cancel=False)
        if reply is not None and reply["type"] == "lifespan.shutdown.failed":
            raise SubAppLifespanError(_failed(self.label, "shutdown", reply))
        if reply is None and _failed_run(run):
            raise SubAppLifespanError(f"{self.label}: shutdown failed{_outcome(run)}")

    async def _exchange(self, run: _Run, event: str, limit: float | None) -> Message | None:
        """Send ``event`` to the app, return its reply (None if the app ended without one)."""
        run.reply, run.replied = None, anyio.Event()
        run.awaiting, run.request = event, {"type": event}
        run.requested.set()
        if run.finished.is_set():
            return None
        try:
            with anyio.fail_after(limit):
                await run.replied.wait()
        except TimeoutError:
            verb = event.removeprefix("lifespan.")
            raise LifespanTimeoutError(
                f"{self.label} did not complete {verb} within {limit} s "
                f"(no lifespan.{verb}.complete or .failed came); it was cancelled. "
                f"Raise {verb}_timeout or fix what the app waits for."
            ) from None
        finally:
            run.awaiting = None
        return run.reply

    async def _close(self, run: _Run, *, cancel: bool) -> None:
        """End the app's task (waiting up to a grace period, then cancelling) and reset.

        The task group is left outside any shield: it was entered by the caller's task.
        """
        if not cancel and not run.finished.is_set():
            with anyio.CancelScope(shield=True), anyio.move_on_after(_EXIT_GRACE):
                await run.finished.wait()
        run.cancel_scope.cancel()
        await run.stack.aclose()
        self._run = None
        self.phase = LifespanPhase.IDLE

    def _unsupported(self, run: _Run) -> None:
        if run.violation is not None:
            raise SubAppLifespanError(f"{self.label}: {run.violation}")
        self.phase = LifespanPhase.UNSUPPORTED
        if not self._logged_unsupported:
            self._logged_unsupported = True
            how = "raised" if run.error is not None else "returned"
            logger.debug(
                "%s does not support the ASGI lifespan protocol (it %s without answering "
                "lifespan.startup); running it without lifespan",
                self.label,
                how,
                exc_info=run.error,
            )

    async def _drive(self, run: _Run) -> None:
        """The app's task: never raises, so it cannot cancel the host's task group."""
        scope = {
            "type": "lifespan",
            "asgi": {"version": "3.0", "spec_version": "2.0"},
            "state": run.state,
        }

        async def receive() -> Message:
            await run.requested.wait()
            request, run.request, run.requested = run.request, None, anyio.Event()
            assert request is not None
            return request

        async def send(message: Message) -> None:
            kind = message.get("type")
            expected = _REPLIES.get(run.awaiting or "", ())
            if kind not in expected:
                if kind == "lifespan.shutdown.failed" and run.started:
                    run.crash = str(message.get("message") or "").strip() or "(no message)"
                    return  # the app's lifespan died while running (FastStream does this)
                run.violation = (
                    f"sent {kind!r} while the server awaited "
                    f"{' or '.join(expected) or 'nothing'} (ASGI lifespan protocol violation)"
                )
                raise RuntimeError(f"{self.label} {run.violation}")
            run.started = run.started or kind == "lifespan.startup.complete"
            run.awaiting, run.reply = None, message
            run.replied.set()

        with run.cancel_scope:
            try:
                await self.app(scope, receive, send)
            except Exception as exc:
                run.error = exc
        run.finished.set()
        run.replied.set()
        if run.started and self.phase is not LifespanPhase.STOPPING:
            level = logging.ERROR if _failed_run(run) else logging.DEBUG
            logger.log(
                level, "%s: its lifespan ended while the app runs%s", self.label, _outcome(run)
            )


def _failed(label: str, step: str, reply: Message) -> str:
    text = str(reply.get("message") or "").strip() or "(no message)"
    return f"{label} sent lifespan.{step}.failed:\n{text}"


def _failed_run(run: _Run) -> bool:
    return run.crash is not None or run.violation is not None or run.error is not None


def _outcome(run: _Run) -> str:
    if run.crash is not None:
        return f": it sent lifespan.shutdown.failed:\n{run.crash}"
    if run.violation is not None:
        return f": it {run.violation}"
    if run.error is not None:
        return ":\n" + "".join(traceback.format_exception(run.error)).rstrip()
    return " (it returned)"
