"""`run_parts`, `CallbackPart`, `ContextPart` and `LifespanMount` used as parts directly."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import anyio.lowlevel
import pytest
from starlette.types import Receive, Scope, Send

from fastapi_streamkit import LifespanMount
from fastapi_streamkit.exceptions import LifespanShutdownError, LifespanStartupError
from fastapi_streamkit.lifespan import (
    CallbackPart,
    ContextPart,
    LifespanPart,
    LifespanPhase,
    run_parts,
)

from .test_lifespan import LIMIT, Log, raw_app, recorder

pytestmark = pytest.mark.anyio


def part(log: Log, name: str, *, fail: str | None = None) -> CallbackPart:
    """A part logging ``name:start``/``name:stop``, one sync and one async callable."""

    def start() -> None:
        log.append(f"{name}:start")
        if fail == "startup":
            raise ValueError(f"{name} cannot start")

    async def stop() -> None:
        await anyio.lowlevel.checkpoint()
        log.append(f"{name}:stop")
        if fail == "shutdown":
            raise ValueError(f"{name} cannot stop")

    return CallbackPart(name, startup=start, shutdown=stop)


async def test_parts_start_in_order_and_stop_in_reverse() -> None:
    log: Log = []
    with anyio.fail_after(LIMIT):
        async with run_parts([part(log, "a"), part(log, "b"), part(log, "c")]):
            log.append("running")
    assert log == ["a:start", "b:start", "c:start", "running", "c:stop", "b:stop", "a:stop"]


async def test_hook_lists_are_read_when_called() -> None:
    log: Log = []
    hooks: list[object] = []
    hooks_part = CallbackPart("hooks", startup=hooks)  # type: ignore[arg-type]
    hooks.append(lambda: log.append("sync"))

    async def later() -> None:
        log.append("async")

    hooks.append(later)
    async with run_parts([hooks_part]):
        pass
    assert log == ["sync", "async"]


@pytest.mark.parametrize("failing", ["a", "b", "c"])
async def test_a_failing_part_rolls_back_what_started(failing: str) -> None:
    log: Log = []
    parts = [part(log, n, fail="startup" if n == failing else None) for n in "abc"]
    with anyio.fail_after(LIMIT), pytest.raises(LifespanStartupError) as info:
        async with run_parts(parts):
            log.append("running")
    names = "abc"[: "abc".index(failing) + 1]
    assert log == [*(f"{n}:start" for n in names), *(f"{n}:stop" for n in reversed(names[:-1]))]
    assert info.value.label == failing
    message = str(info.value)
    assert message.startswith(f"{failing} failed to start: ValueError: {failing} cannot start")
    assert "Traceback (most recent call last)" in message
    assert "in start" in message  # the failing callable's frame
    assert isinstance(info.value.__cause__, ValueError)


async def test_a_rollback_failure_is_reported_with_the_startup_failure() -> None:
    log: Log = []
    parts = [part(log, "a", fail="shutdown"), part(log, "b", fail="startup")]
    with pytest.raises(LifespanStartupError) as info:
        async with run_parts(parts):
            pass
    assert log == ["a:start", "b:start", "a:stop"]
    assert "while rolling back, a failed to stop: ValueError: a cannot stop" in str(info.value)


@pytest.mark.parametrize("fail_a", [None, "shutdown"])
@pytest.mark.parametrize("fail_c", [None, "shutdown"])
async def test_every_part_stops_and_errors_are_raised_together(
    fail_a: str | None, fail_c: str | None
) -> None:
    log: Log = []
    parts = [part(log, "a", fail=fail_a), part(log, "b"), part(log, "c", fail=fail_c)]
    expected = [n for n, f in (("c", fail_c), ("a", fail_a)) if f]
    with anyio.fail_after(LIMIT):
        try:
            async with run_parts(parts):
                pass
        except LifespanShutdownError as group:
            assert [str(e) for e in group.exceptions] == [f"{n} cannot stop" for n in expected]
            assert [e.__notes__ for e in group.exceptions] == [
                [f"while stopping {n}"] for n in expected
            ]
            assert str(group).startswith(f"{len(expected)} lifespan part")
        else:
            assert expected == []
    assert log[-3:] == ["c:stop", "b:stop", "a:stop"]


async def test_nested_runs_of_the_same_parts_start_and_stop_them_once() -> None:
    log: Log = []
    parts = [part(log, "a"), part(log, "b")]
    async with run_parts(parts):
        async with run_parts(parts):  # a router included twice
            log.append("inner")
        log.append("outer")
    assert log == ["a:start", "b:start", "inner", "outer", "b:stop", "a:stop"]


async def test_an_error_in_the_body_still_stops_every_part() -> None:
    log: Log = []
    with pytest.raises(KeyError):
        async with run_parts([part(log, "a"), part(log, "b")]):
            raise KeyError("body")
    assert log == ["a:start", "b:start", "b:stop", "a:stop"]


async def test_cancelling_the_body_shuts_down_rather_than_cancels() -> None:
    log: Log = []

    async def slow_stop() -> None:
        await anyio.sleep(0.05)  # would be cancelled at once without the shield
        log.append("slow:stop")

    with anyio.fail_after(LIMIT):
        with anyio.move_on_after(0.05):
            async with run_parts([CallbackPart("slow", shutdown=slow_stop), part(log, "b")]):
                await anyio.sleep_forever()
    assert log == ["b:start", "b:stop", "slow:stop"]


async def test_cancelled_during_startup_rolls_back_and_stays_cancelled() -> None:
    log: Log = []
    with anyio.fail_after(LIMIT):
        with anyio.move_on_after(0.05) as scope:
            hang = CallbackPart("hang", startup=anyio.sleep_forever)
            async with run_parts([part(log, "a"), hang, part(log, "c")]):
                log.append("running")
    assert scope.cancelled_caught
    assert log == ["a:start", "a:stop"]


async def test_context_part_is_shut_down_for_real_when_a_later_part_fails() -> None:
    log: Log = []

    @asynccontextmanager
    async def lifespan() -> AsyncIterator[dict[str, int]]:
        log.append("ctx:start")
        yield {"answer": 42}
        log.append("ctx:stop")  # no try/finally: only a clean exit gets here

    context = ContextPart("ctx", lifespan())
    with pytest.raises(LifespanStartupError):
        async with run_parts([context, part(log, "b", fail="startup")]):
            pass
    assert context.value == {"answer": 42}
    assert log == ["ctx:start", "b:start", "ctx:stop"]


async def test_context_part_may_hold_a_task_group_open() -> None:
    log: Log = []

    @asynccontextmanager
    async def with_tasks() -> AsyncIterator[None]:
        async with anyio.create_task_group() as tg:
            tg.start_soon(anyio.sleep_forever)
            yield
            tg.cancel_scope.cancel()
        log.append("tasks:stop")

    mount = LifespanMount("/a", raw_app(recorder(log, "a")))
    with anyio.fail_after(LIMIT):
        async with run_parts([ContextPart("tasks", with_tasks()), mount, part(log, "c")]):
            log.append("running")
    assert log == ["a:start", "c:start", "running", "c:stop", "a:stop", "tasks:stop"]


async def test_lifespan_mount_is_a_part_with_phases_and_state() -> None:
    log: Log = []
    mount = LifespanMount("/a", raw_app(recorder(log, "a")), name="a")
    included = copy.copy(mount)  # what FastAPI's include_router does to a Mount
    for candidate in (mount, CallbackPart("x"), ContextPart("y", asynccontextmanager(_empty)())):
        assert isinstance(candidate, LifespanPart)
    assert mount.label == "sub-app 'a' (app) mounted at '/a'"
    assert (mount.phase, mount.state) == (LifespanPhase.IDLE, None)
    with anyio.fail_after(LIMIT):
        async with run_parts([mount]):
            assert mount.phase is LifespanPhase.STARTED
            assert included.state == {"owner": "a", "a_only": True}
            async with run_parts([included]):  # nested: no second start
                pass
            assert log == ["a:start"]
    assert log == ["a:start", "a:stop"]
    assert (mount.phase, mount.state) == (LifespanPhase.IDLE, None)


async def _empty() -> AsyncIterator[None]:
    yield


async def test_a_sub_app_that_returns_after_startup_needs_no_shutdown() -> None:
    async def brief(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "lifespan.startup.complete"})

    mount = LifespanMount("/brief", brief)
    with anyio.fail_after(LIMIT):
        async with run_parts([mount]):
            pass
    assert mount.phase is LifespanPhase.IDLE
