"""End to end: `mount()` under a real ``uvicorn --lifespan on`` process.

The apps below are built at import so uvicorn can load them as
``tests.test_lifespan_uvicorn:<name>``; their lifespans append to the file named by
``STREAMKIT_LIFESPAN_EVENTS``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
from fastapi import FastAPI, Request
from fastapi import WebSocket as FastAPIWebSocket
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route
from websockets.sync.client import connect

from fastapi_streamkit import mount

from ._server import free_port, serve_process

ROOT = Path(__file__).resolve().parents[1]
EVENTS = "STREAMKIT_LIFESPAN_EVENTS"


def record(name: str, *, fail: bool = False) -> object:
    @asynccontextmanager
    async def lifespan(app: object) -> AsyncIterator[dict[str, str]]:
        events = Path(os.environ[EVENTS])
        with events.open("a") as f:
            f.write(f"{name}:start\n")
        if fail:
            raise RuntimeError(f"{name} cannot start")
        yield {"owner": name}
        with events.open("a") as f:  # no try/finally: only a real shutdown gets here
            f.write(f"{name}:stop\n")

    return lifespan


def sub_app(name: str, *, fail: bool = False) -> FastAPI:
    app = FastAPI(lifespan=record(name, fail=fail))  # type: ignore[arg-type]

    @app.get("/state", name="state")
    def state(request: Request) -> dict[str, str]:
        return {"owner": request.state.owner}

    @app.websocket("/ws")
    async def ws(websocket: FastAPIWebSocket) -> None:
        await websocket.accept()
        await websocket.send_json({"owner": websocket.state.owner})
        await websocket.close()

    return app


def host_app(*, fail: bool) -> Starlette:
    async def state(request: Request) -> JSONResponse:
        return JSONResponse({"owner": request.state.owner, "a": str(request.url_for("a:state"))})

    host = Starlette(routes=[Route("/state", state)], lifespan=record("host"))  # type: ignore[arg-type]
    mount(host, "/a", sub_app("a"), name="a")
    mount(host, "/payments", sub_app("payments", fail=fail), name="payments")
    mount(host, "/c", sub_app("c"), name="c")
    return host


ok_app = host_app(fail=False)
failing_app = host_app(fail=True)


def uvicorn_command(target: str, port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "uvicorn",
        target,
        "--app-dir",
        str(ROOT),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--lifespan",
        "on",
    ]


def test_a_failing_sub_app_makes_uvicorn_exit_non_zero_with_its_error(tmp_path: Path) -> None:
    events = tmp_path / "events"
    proc = subprocess.run(
        uvicorn_command("tests.test_lifespan_uvicorn:failing_app", free_port()),
        env={**os.environ, EVENTS: str(events)},
        capture_output=True,
        text=True,
        timeout=30,
    )
    log = proc.stdout + proc.stderr
    assert proc.returncode != 0, log
    assert "sub-app 'payments' (FastAPI) mounted at '/payments' failed to start" in log
    assert "RuntimeError: payments cannot start" in log
    assert "Application startup failed. Exiting." in log
    # a started before and was shut down for real; c never started
    assert events.read_text().split() == [
        "host:start",
        "a:start",
        "payments:start",
        "a:stop",
        "host:stop",
    ]


def test_sub_apps_start_serve_their_own_state_and_stop_under_uvicorn(tmp_path: Path) -> None:
    events = tmp_path / "events"
    env = {EVENTS: str(events)}
    target = "tests.test_lifespan_uvicorn:ok_app"
    with serve_process(target, "--app-dir", str(ROOT), "--lifespan", "on", env=env) as (
        proc,
        port,
    ):
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, timeout=5) as client:
            assert client.get("/state").json() == {"owner": "host", "a": f"{base}/a/state"}
            for name in ("a", "payments", "c"):
                assert client.get(f"/{name}/state").json() == {"owner": name}
        with connect(f"ws://127.0.0.1:{port}/c/ws", open_timeout=5) as ws:
            assert json.loads(ws.recv(timeout=5)) == {"owner": "c"}
        proc.send_signal(signal.SIGTERM)
        # uvicorn shuts down, then re-raises the signal it captured: death by SIGTERM
        assert proc.wait(timeout=15) in (0, -signal.SIGTERM)
        output = proc.stdout.read().decode() if proc.stdout else ""
        assert "Traceback" not in output, output
    assert events.read_text().split() == [
        "host:start",
        "a:start",
        "payments:start",
        "c:start",
        "c:stop",
        "payments:stop",
        "a:stop",
        "host:stop",
    ]
