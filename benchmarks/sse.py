"""SSE throughput: 100,000 small JSON events ``{"i": n, "msg": "hello"}`` per request.

Competitors (each an app serving ``GET /events?n=N``):
  streamkit     fastapi_streamkit.EventStream over an async generator yielding dicts
  fastapi       FastAPI 0.165 native SSE: generator endpoint, response_class=EventSourceResponse
  sse-starlette sse_starlette.EventSourceResponse, items {"data": json.dumps(obj)}
  litestar      litestar.response.ServerSentEvent over an async generator of json.dumps(obj)
  starlette     StreamingResponse over an async generator of pre-encoded SSE bytes
  raw           a bare ASGI app sending pre-encoded SSE bytes, one event per message (ceiling)

Modes: ``inprocess`` calls each app directly (asyncio loop, a no-op send that counts bytes,
a receive that never reports a disconnect, ASGI HTTP spec 2.3 as uvicorn 0.54 reports it, or
``--spec 2.4``); ``uvicorn`` runs each app in its own uvicorn subprocess (uvloop + httptools)
read by a raw-socket client that counts ``data:`` lines. Rounds alternate the competitors.

    python benchmarks/sse.py [--quick] [--mode inprocess|uvicorn|both] [--spec 2.3|2.4]
"""

import argparse
import asyncio
import contextlib
import functools
import gc
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import anyio
from _util import Client, http_scope, machine_notes, median

NAMES = ("streamkit", "fastapi", "sse-starlette", "litestar", "starlette", "raw")
# EventStream must be at least this many times faster than each (raw: this fraction of it).
TARGETS = {
    "inprocess": {"fastapi": 10.0, "sse-starlette": 3.0, "litestar": 1.5, "raw": 0.5},
    "uvicorn": {"fastapi": 10.0, "sse-starlette": 3.0, "litestar": 1.5, "raw": 0.9},
}
App = Callable[..., Any]


def _item(i: int) -> dict[str, Any]:
    return {"i": i, "msg": "hello"}


def _json(i: int) -> str:
    return json.dumps(_item(i), separators=(",", ":"))


@functools.cache
def _pre_encoded(n: int) -> tuple[bytes, ...]:
    return tuple(f"data: {_json(i)}\n\n".encode() for i in range(n))


async def _dicts(n: int) -> AsyncIterator[dict[str, Any]]:
    for i in range(n):
        yield {"i": i, "msg": "hello"}


def streamkit_app() -> App:
    from fastapi import FastAPI

    from fastapi_streamkit.sse import EventStream

    app = FastAPI()

    @app.get("/events")
    async def events(n: int) -> EventStream:
        return EventStream(_dicts(n))

    return app


def fastapi_app() -> App:
    from fastapi import FastAPI
    from fastapi.sse import EventSourceResponse

    app = FastAPI()

    @app.get("/events", response_class=EventSourceResponse)
    async def events(n: int):  # type: ignore[no-untyped-def]  # FastAPI infers the stream
        for i in range(n):
            yield {"i": i, "msg": "hello"}

    return app


def sse_starlette_app() -> App:
    from fastapi import FastAPI
    from sse_starlette import EventSourceResponse

    async def source(n: int) -> AsyncIterator[dict[str, str]]:
        for i in range(n):
            yield {"data": _json(i)}

    app = FastAPI()

    @app.get("/events")
    async def events(n: int) -> EventSourceResponse:
        return EventSourceResponse(source(n))

    return app


def litestar_app() -> App:
    from litestar import Litestar, get
    from litestar.response import ServerSentEvent

    async def source(n: int) -> AsyncIterator[str]:
        for i in range(n):
            yield _json(i)

    @get("/events")
    async def events(n: int) -> ServerSentEvent:
        return ServerSentEvent(source(n))

    return Litestar([events], logging_config=None)


def starlette_app() -> App:
    from fastapi import FastAPI
    from starlette.responses import StreamingResponse

    async def source(n: int) -> AsyncIterator[bytes]:
        for chunk in _pre_encoded(n):
            yield chunk

    app = FastAPI()

    @app.get("/events")
    async def events(n: int) -> StreamingResponse:
        return StreamingResponse(source(n), media_type="text/event-stream")

    return app


def raw_app() -> App:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        n = int(scope["query_string"].decode().partition("n=")[2])
        headers = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        for chunk in _pre_encoded(n):
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    return app


FACTORIES: dict[str, Callable[[], App]] = {
    "streamkit": streamkit_app,
    "fastapi": fastapi_app,
    "sse-starlette": sse_starlette_app,
    "litestar": litestar_app,
    "starlette": starlette_app,
    "raw": raw_app,
}


# -- in-process -------------------------------------------------------------------------------


async def _collect(app: App, n: int, spec: str) -> bytes:
    chunks: list[bytes] = []
    client = Client()

    async def send(message: dict[str, Any]) -> None:
        await client.send(message)
        if message["type"] == "http.response.body":
            chunks.append(bytes(message.get("body", b"")))

    with anyio.fail_after(30):
        await app(http_scope("/events", f"n={n}", spec=spec), client.receive, send)
    return b"".join(chunks)


def check_events(body: bytes, n: int, name: str) -> None:
    """Fail loudly unless ``body`` holds exactly the n expected events, in order."""
    text = body.decode().replace("\r\n", "\n")
    events = [e for e in text.split("\n\n") if e.strip() and not e.startswith(":")]
    got = [json.loads(e.removeprefix("data:").strip()) for e in events]
    if got != [_item(i) for i in range(n)]:
        raise SystemExit(f"{name}: wrong events on the wire, e.g. {events[:2]!r}")


async def time_inprocess(app: App, n: int, spec: str) -> float:
    """Stream n events through ``app`` in-process; events per second."""
    client = Client()
    scope = http_scope("/events", f"n={n}", spec=spec)
    gc.collect()
    start = time.perf_counter()
    await app(scope, client.receive, client.send)
    elapsed = time.perf_counter() - start
    if not client.ended:
        raise SystemExit("the response did not end its body")
    return n / elapsed


async def run_inprocess(names: list[str], n: int, rounds: int, spec: str) -> dict[str, list[float]]:
    apps = {name: FACTORIES[name]() for name in names}
    for name, app in apps.items():
        check_events(await _collect(app, 1000, spec), 1000, name)
    _pre_encoded(n)
    results: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            results[name].append(await time_inprocess(apps[name], n, spec))
    return results


# -- over uvicorn ---------------------------------------------------------------------------


def serve(name: str, port: int) -> None:
    """Run one competitor under uvicorn (uvloop + httptools when installed)."""
    import uvicorn

    uvicorn.run(
        FACTORIES[name](), host="127.0.0.1", port=port, log_level="warning", access_log=False
    )


@contextlib.contextmanager
def servers(names: list[str]) -> Iterator[dict[str, int]]:
    """One uvicorn subprocess per competitor, so no library's import side effects leak."""
    procs: dict[str, tuple[subprocess.Popen[bytes], int]] = {}
    try:
        for name in names:
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", 0))
                port = probe.getsockname()[1]
            cmd = [sys.executable, __file__, "--serve", name, "--port", str(port)]
            procs[name] = (subprocess.Popen(cmd, env={**os.environ, "PYTHONHASHSEED": "0"}), port)
        for name, (proc, port) in procs.items():
            _wait_listening(proc, port, name)
        yield {name: port for name, (_, port) in procs.items()}
    finally:
        for proc, _ in procs.values():  # throughput is measured here, not graceful shutdown
            proc.kill()
            proc.wait()


def _wait_listening(proc: subprocess.Popen[bytes], port: int, name: str) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    raise SystemExit(f"the {name} server did not start on port {port}")


def fetch(port: int, n: int) -> float:
    """GET n events over a raw socket, count ``data:`` lines; events per second."""
    request = f"GET /events?n={n} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=120) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        start = time.perf_counter()
        sock.sendall(request.encode())
        count = 0
        carry = tail = first = b""
        while data := sock.recv(1 << 20):
            if not first:
                first = data[:64]
            chunk = carry + data
            count += chunk.count(b"data:")
            carry = chunk[-4:]  # shorter than "data:": a match is never counted twice
            tail = (tail + data)[-8:]
        elapsed = time.perf_counter() - start
    if not first.startswith(b"HTTP/1.1 200") or not tail.endswith(b"0\r\n\r\n") or count != n:
        raise SystemExit(f"port {port}: bad response: {first!r}... {tail!r}, {count} events")
    return n / elapsed


def run_uvicorn(names: list[str], n: int, rounds: int) -> dict[str, list[float]]:
    results: dict[str, list[float]] = {name: [] for name in names}
    with servers(names) as ports:
        for name in names:  # warm-up: imports, caches, the pre-encoded events
            fetch(ports[name], min(n, 10_000))
        for r in range(rounds):
            order = names[r % len(names) :] + names[: r % len(names)]
            for name in order:
                results[name].append(fetch(ports[name], n))
    return results


# -- report -----------------------------------------------------------------------------------


def report(title: str, mode: str, results: dict[str, list[float]]) -> list[str]:
    """Print events/s and every ratio to EventStream; return the missed targets."""
    ours = median(results["streamkit"])
    print(f"\n{title}")
    print(f"  {'competitor':<14}{'median ev/s':>14}{'best ev/s':>14}   EventStream vs it")
    missed = []
    for name, rates in results.items():
        mid = median(rates)
        ratio = ours / mid
        target = TARGETS[mode].get(name)
        if name == "raw":
            verdict = f"{ratio:6.0%} of the ceiling"
        else:
            verdict = f"{ratio:6.2f}x"
        if target is not None:
            ok = ratio >= target
            want = f"{target:.0%}" if name == "raw" else f"{target:g}x"
            verdict += f"  (target >= {want}: {'ok' if ok else 'MISSED'})"
            if not ok:
                missed.append(f"{mode}: {name} {verdict.strip()}")
        print(f"  {name:<14}{mid:>14,.0f}{max(rates):>14,.0f}   {verdict}")
    return missed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="20,000 events, 2 rounds")
    parser.add_argument("--mode", choices=("inprocess", "uvicorn", "both"), default="both")
    parser.add_argument("--spec", choices=("2.3", "2.4"), default="2.3")
    parser.add_argument("--events", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--only", default=",".join(NAMES), help="comma-separated competitors")
    parser.add_argument("--serve", choices=NAMES, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port)
        return
    n = args.events or (20_000 if args.quick else 100_000)
    rounds = args.rounds or (2 if args.quick else 5)
    names = [name for name in NAMES if name in args.only.split(",")]
    if "streamkit" not in names:
        names.insert(0, "streamkit")
    print(f"SSE throughput, {n:,} events per request, {rounds} alternating rounds")
    print(machine_notes())
    missed: list[str] = []
    started = time.perf_counter()
    if args.mode in ("inprocess", "both"):
        results = asyncio.run(run_inprocess(names, n, rounds, args.spec))
        title = f"in-process (asyncio, ASGI spec {args.spec}, no-op send)"
        missed += report(title, "inprocess", results)
    if args.mode in ("uvicorn", "both"):
        results = run_uvicorn(names, n, rounds)
        missed += report("over uvicorn (uvloop + httptools, raw-socket client)", "uvicorn", results)
    print(f"\ntook {time.perf_counter() - started:.0f} s")
    if missed:
        print("targets missed:\n  " + "\n  ".join(missed))


if __name__ == "__main__":
    main()
