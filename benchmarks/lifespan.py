"""Lifespan mounting: start-up (and shutdown) cost of 20 mounted no-op sub-apps, side by side.

Each variant is one host (Starlette) with N sub-apps whose lifespan does nothing, and one full
ASGI lifespan cycle driven in-process as uvicorn would (``lifespan.startup`` ->
``.complete``, ``lifespan.shutdown`` -> ``.complete``):

- ``plain mount``: ``host.mount()`` -- the sub-apps' lifespans never run (the bug we fix);
  the host's own cost.
- ``own lifespans``: the host's lifespan enters each sub-app's ``lifespan_context`` directly,
  no ASGI protocol: the sub-apps' own time (a lower bound no ASGI-level helper can beat).
- ``asgi-lifespan``: the usual workaround, one ``asgi_lifespan.LifespanManager`` per sub-app
  in the host's lifespan (it cancels started apps on failure instead of shutting them down).
- ``streamkit mount()``: ``fastapi_streamkit.mount`` -- each sub-app driven over ASGI in its
  own task, with rollback, timeouts and per-app state.

Prints the median start-up and shutdown times, our overhead over ``own lifespans`` (target:
< 20 ms for 20 sub-apps) and the ratio to asgi-lifespan, all measured in one run.

    .venv/bin/python benchmarks/lifespan.py [--apps 20] [--cycles 200]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager

import anyio
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.types import ASGIApp, Message

from fastapi_streamkit import mount

try:
    from _util import machine_notes, median
except ImportError:  # run as a module
    from benchmarks._util import machine_notes, median


@asynccontextmanager
async def no_op(app: object) -> AsyncIterator[None]:
    yield


def sub_apps(count: int, kind: str) -> list[Starlette]:
    if kind == "fastapi":
        return [FastAPI(lifespan=no_op) for _ in range(count)]
    return [Starlette(lifespan=no_op) for _ in range(count)]


def plain(subs: list[Starlette]) -> ASGIApp:
    host = Starlette()
    for i, sub in enumerate(subs):
        host.mount(f"/s{i}", sub)
    return host


def own(subs: list[Starlette]) -> ASGIApp:
    @asynccontextmanager
    async def lifespan(app: object) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            for sub in subs:
                await stack.enter_async_context(sub.router.lifespan_context(sub))
            yield

    host = Starlette(lifespan=lifespan)
    for i, sub in enumerate(subs):
        host.mount(f"/s{i}", sub)
    return host


def managers(subs: list[Starlette]) -> ASGIApp:
    @asynccontextmanager
    async def lifespan(app: object) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            for sub in subs:
                await stack.enter_async_context(LifespanManager(sub))
            yield

    host = Starlette(lifespan=lifespan)
    for i, sub in enumerate(subs):
        host.mount(f"/s{i}", sub)
    return host


def streamkit(subs: list[Starlette]) -> ASGIApp:
    host = Starlette()
    for i, sub in enumerate(subs):
        mount(host, f"/s{i}", sub, name=f"s{i}")
    return host


VARIANTS: dict[str, Callable[[list[Starlette]], ASGIApp]] = {
    "plain mount": plain,
    "own lifespans": own,
    "asgi-lifespan": managers,
    "streamkit mount()": streamkit,
}


async def one_cycle(app: ASGIApp) -> tuple[float, float]:
    """Drive one lifespan cycle as a server does; return (startup, shutdown) seconds."""
    to_app, inbox = anyio.create_memory_object_stream[Message](1)
    outbox, replies = anyio.create_memory_object_stream[Message](1)
    scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": {}}
    async with to_app, inbox, outbox, replies, anyio.create_task_group() as tg:
        tg.start_soon(app, scope, inbox.receive, outbox.send)
        t0 = time.perf_counter()
        await to_app.send({"type": "lifespan.startup"})
        reply = await replies.receive()
        t1 = time.perf_counter()
        assert reply["type"] == "lifespan.startup.complete", reply
        await to_app.send({"type": "lifespan.shutdown"})
        reply = await replies.receive()
        t2 = time.perf_counter()
        assert reply["type"] == "lifespan.shutdown.complete", reply
    return t1 - t0, t2 - t1


async def measure(apps: int, cycles: int, kind: str) -> dict[str, tuple[float, float]]:
    hosts = {name: build(sub_apps(apps, kind)) for name, build in VARIANTS.items()}
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in hosts}
    for _ in range(5):  # warm-up
        for host in hosts.values():
            await one_cycle(host)
    for _ in range(cycles):  # interleaved, so drifts hit every variant alike
        for name, host in hosts.items():
            samples[name].append(await one_cycle(host))
    return {
        name: (median([s for s, _ in got]), median([d for _, d in got]))
        for name, got in samples.items()
    }


def report(apps: int, cycles: int, kind: str, results: dict[str, tuple[float, float]]) -> None:
    own_start, own_stop = results["own lifespans"]
    ours_start, ours_stop = results["streamkit mount()"]
    lm_start, lm_stop = results["asgi-lifespan"]
    print(f"\n{apps} no-op {kind} sub-apps, median of {cycles} lifespan cycles")
    print(f"{'variant':<20}{'startup ms':>12}{'shutdown ms':>13}{'runs lifespans':>16}")
    for name, (start, stop) in results.items():
        runs = "no" if name == "plain mount" else "yes"
        print(f"{name:<20}{start * 1e3:>12.3f}{stop * 1e3:>13.3f}{runs:>16}")
    overhead = (ours_start - own_start) * 1e3
    verdict = "OK" if overhead < 20 else "OVER TARGET"
    print(f"streamkit start-up overhead over own lifespans: {overhead:.3f} ms (< 20 ms: {verdict})")
    print(f"streamkit shutdown overhead over own lifespans: {(ours_stop - own_stop) * 1e3:.3f} ms")
    print(
        f"ratio streamkit / asgi-lifespan: startup {ours_start / lm_start:.2f}x, "
        f"shutdown {ours_stop / lm_stop:.2f}x"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--apps", type=int, default=20)
    parser.add_argument("--cycles", type=int, default=200)
    args = parser.parse_args()
    print(machine_notes())
    for kind in ("starlette", "fastapi"):
        results = anyio.run(measure, args.apps, args.cycles, kind)
        report(args.apps, args.cycles, kind, results)


if __name__ == "__main__":
    main()
