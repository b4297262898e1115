"""WebSocket echo throughput: our `WebSocket` (JSON, MessagePack) vs Starlette's JSON methods.

One uvicorn server (a subprocess, default settings: uvloop, httptools, websockets-sansio) runs
three FastAPI endpoints that echo every message back:

- ``/starlette/json``: `starlette.websockets.WebSocket.receive_json` / ``send_json``
  (what ``fastapi.WebSocket`` gives), on a plain FastAPI route;
- ``/ours/json``: `fastapi_streamkit.WebSocket.iter_json` / ``send_json`` on a `StreamRouter`-style
  route (`ConnectionRouter`), size limit and all checks on;
- ``/ours/msgpack``: ``iter_msgpack`` / ``send_msgpack``.

The client is a raw-socket WebSocket client that writes pre-built frames and counts the echoed
frames, so that the server, not the client, is what is measured. It sends N small messages
(pipelined) and waits for the N echoes; the best of R rounds is kept, rounds interleaved.
Three figures: wall-clock messages/s; the server process's CPU time per message (steady even
on a busy machine, and what bounds a saturated server); the app's own cost per message,
driven in-process without a server.

    .venv/bin/python benchmarks/websocket.py [--messages 50000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import itertools
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import msgspec
from fastapi import FastAPI, WebSocketDisconnect
from fastapi import WebSocket as StarletteWebSocket

from fastapi_streamkit import WebSocket
from fastapi_streamkit.connection import ConnectionRouter

ROOT = Path(__file__).resolve().parent.parent
MESSAGE = {"id": 12345, "user": "ann", "text": "hello, world", "tags": ["a", "b"], "ok": True}


def build_app() -> FastAPI:
    """The server app (imported by the uvicorn subprocess)."""
    app = FastAPI()
    router = ConnectionRouter()

    @app.websocket("/starlette/json")
    async def starlette_json(websocket: StarletteWebSocket) -> None:
        await websocket.accept()
        try:
            while True:
                await websocket.send_json(await websocket.receive_json())
        except WebSocketDisconnect:
            pass

    @router.websocket("/ours/json")
    async def ours_json(websocket: WebSocket) -> None:
        await websocket.accept()
        async for message in websocket.iter_json():
            await websocket.send_json(message)

    @router.websocket("/ours/msgpack")
    async def ours_msgpack(websocket: WebSocket) -> None:
        await websocket.accept()
        async for message in websocket.iter_msgpack():
            await websocket.send_msgpack(message)

    app.include_router(router)
    return app


def frame(payload: bytes, *, binary: bool) -> bytes:
    """A masked client frame (the all-zero mask leaves the payload as is)."""
    first = 0x82 if binary else 0x81
    size = len(payload)
    if size < 126:
        head = bytes([first, 0x80 | size])
    else:
        head = bytes([first, 0x80 | 126]) + size.to_bytes(2, "big")
    return head + b"\x00\x00\x00\x00" + payload


async def echo_round(port: int, path: str, payload: bytes, *, binary: bool, count: int) -> float:
    """Send ``count`` frames, read ``count`` echoes; the elapsed seconds."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 101"):
        raise RuntimeError(f"handshake failed: {head!r}")
    blob = frame(payload, binary=binary) * count
    started = time.perf_counter()

    async def send() -> None:
        step = 64 * 1024
        for offset in range(0, len(blob), step):
            writer.write(blob[offset : offset + step])
            await writer.drain()

    sender = asyncio.create_task(send())
    await read_frames(reader, count, len(payload))
    elapsed = time.perf_counter() - started
    await sender
    writer.write(b"\x88\x82\x00\x00\x00\x00\x03\xe8")  # close 1000
    await writer.drain()
    writer.close()
    return elapsed


async def read_frames(reader: asyncio.StreamReader, count: int, expected: int) -> None:
    buffer, seen = b"", 0
    while seen < count:
        chunk = await reader.read(1 << 20)
        if not chunk:
            raise RuntimeError(f"connection closed after {seen} of {count} echoes")
        buffer += chunk
        offset = 0
        while len(buffer) - offset >= 2:
            size = buffer[offset + 1] & 0x7F
            start = offset + 2
            if size == 126:
                if len(buffer) - offset < 4:
                    break
                size = int.from_bytes(buffer[offset + 2 : offset + 4], "big")
                start = offset + 4
            if len(buffer) < start + size:
                break
            if buffer[offset] & 0x0F == 0x8:
                raise RuntimeError(f"server closed: {buffer[start : start + size]!r}")
            offset = start + size
            seen += 1
        buffer = buffer[offset:]


def app_cost(count: int, rounds: int) -> dict[str, float]:
    """Microseconds per echoed message spent in the app alone (in-process, no server)."""
    app = build_app()
    text = msgspec.json.encode(MESSAGE).decode()
    cases = {
        "starlette receive_json/send_json": ("/starlette/json", {"text": text}),
        "ours iter_json/send_json": ("/ours/json", {"text": text}),
        "ours iter_msgpack/send_msgpack": (
            "/ours/msgpack",
            {"bytes": msgspec.msgpack.encode(MESSAGE)},
        ),
    }

    async def run(path: str, data: dict[str, object]) -> float:
        connect = [{"type": "websocket.connect"}]
        message = {"type": "websocket.receive", **data}
        disconnect = {"type": "websocket.disconnect", "code": 1000}
        messages = itertools.chain(connect, itertools.repeat(message, count), [disconnect])

        async def receive() -> dict[str, object]:
            return next(messages)

        async def send(message: object) -> None:
            pass

        scope = {
            "type": "websocket",
            "path": path,
            "raw_path": path.encode(),
            "root_path": "",
            "headers": [],
            "query_string": b"",
            "scheme": "ws",
            "subprotocols": [],
            "server": ("127.0.0.1", 80),
            "client": ("127.0.0.1", 1),
            "state": {},
            "asgi": {"version": "3.0", "spec_version": "2.4"},
        }
        began = time.perf_counter()
        await app(scope, receive, send)
        return (time.perf_counter() - began) / count * 1e6

    best = dict.fromkeys(cases, float("inf"))
    for _ in range(rounds):
        for name, (path, data) in cases.items():
            best[name] = min(best[name], asyncio.run(run(path, data)))
    return best


def server_cpu(pid: int) -> float:
    """CPU seconds (user + system) used so far by process ``pid``; inf where /proc is missing."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("inf")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_for_port(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("the benchmark server exited")
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("the benchmark server did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cmd = [sys.executable, "-m", "uvicorn", "--factory", "benchmarks.websocket:build_app"]
    cmd += ["--port", str(port), "--log-level", "warning"]
    proc = subprocess.Popen(cmd, cwd=ROOT)
    json_payload = msgspec.json.encode(MESSAGE)
    cases = {
        "starlette receive_json/send_json": ("/starlette/json", json_payload, False),
        "ours iter_json/send_json": ("/ours/json", json_payload, False),
        "ours iter_msgpack/send_msgpack": ("/ours/msgpack", msgspec.msgpack.encode(MESSAGE), True),
    }
    best = dict.fromkeys(cases, float("inf"))
    cpu = dict.fromkeys(cases, float("inf"))  # server CPU seconds per round: robust to noise
    try:
        wait_for_port(port, proc)
        for path, payload, binary in cases.values():  # warm-up
            asyncio.run(echo_round(port, path, payload, binary=binary, count=2000))
        for _ in range(args.rounds):
            for name, (path, payload, binary) in cases.items():
                used = server_cpu(proc.pid)
                elapsed = asyncio.run(
                    echo_round(port, path, payload, binary=binary, count=args.messages)
                )
                best[name] = min(best[name], elapsed)
                cpu[name] = min(cpu[name], server_cpu(proc.pid) - used)
    finally:
        proc.terminate()
        proc.wait(10)
    costs = app_cost(args.messages, args.rounds + 2)
    base = args.messages / best["starlette receive_json/send_json"]
    print(
        f"WebSocket echo, {args.messages} messages of ~{len(json_payload)} bytes, best of "
        f"{args.rounds} (uvicorn defaults, Python {sys.version.split()[0]})"
    )
    for name in cases:
        rate = args.messages / best[name]
        print(f"  {name:36s} {rate:10,.0f} msg/s  {rate / base:5.2f}x Starlette")
    if all(value < float("inf") for value in cpu.values()):
        print("Server CPU per echoed message (uvicorn + app; what bounds a saturated server)")
        base_cpu = cpu["starlette receive_json/send_json"]
        for name, used in cpu.items():
            per = used / args.messages * 1e6
            print(f"  {name:36s} {per:8.2f} us/msg  {base_cpu / used:5.2f}x Starlette")
    print("App cost per echoed message (in-process, no server: what the endpoint itself spends)")
    base_cost = costs["starlette receive_json/send_json"]
    for name, cost in costs.items():
        print(f"  {name:36s} {cost:8.2f} us/msg  {base_cost / cost:5.2f}x Starlette")


if __name__ == "__main__":
    main()
