"""The examples of docs/lifespan.md, run: each module is loaded fresh from docs/examples/."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from fastapi.testclient import TestClient

from fastapi_streamkit.exceptions import LifespanStartupError

from ._examples import EXAMPLES, load
from ._redis import require_redis
from ._server import free_port


def test_lifespan_mount() -> None:
    example = load("lifespan_mount")
    for _ in range(2):
        with TestClient(example.app) as client:
            assert client.get("/admin/users").json() == {"pool": "admin-db", "open": True}
            assert client.get("/metrics/hits").text == "1"
            assert client.get("/metrics/hits").text == "2"
            assert client.get("/").json() == {"users": "http://testserver/admin/users"}
        assert example.events == [
            "host: started",
            "admin: pool opened",
            "metrics: started",
            "metrics: stopped",
            "admin: pool closed",
            "host: stopped",
        ]
        example.events.clear()


def test_lifespan_failure_in_process() -> None:
    example = load("lifespan_failure")
    with pytest.raises(LifespanStartupError) as info, TestClient(example.app):
        pass
    assert str(info.value).startswith(
        "sub-app 'billing' (Starlette) mounted at '/billing' failed to start"
    )
    assert "ConnectionError: billing: cannot reach its database" in str(info.value)
    assert example.events == ["search: start", "billing: start", "search: stop"]


def test_lifespan_failure_under_uvicorn() -> None:
    command = [sys.executable, "-m", "uvicorn", "lifespan_failure:app", "--app-dir", str(EXAMPLES)]
    proc = subprocess.run(
        [*command, "--lifespan", "on", "--host", "127.0.0.1", "--port", str(free_port())],
        capture_output=True,
        text=True,
        timeout=30,
    )
    log = proc.stdout + proc.stderr
    assert proc.returncode != 0, log
    assert (
        "LifespanStartupError: sub-app 'billing' (Starlette) mounted at '/billing' failed to start"
        in log
    )
    assert "ConnectionError: billing: cannot reach its database" in log


def test_lifespan_parts() -> None:
    example = load("lifespan_parts")
    with TestClient(example.app) as client:
        assert client.get("/dsn").json() == {"dsn": "postgres://db/app"}
        assert client.get("/search/nothing-here").status_code == 404  # routed into the sub-app
    assert example.events == [
        "database: connected",
        "search: started",
        "caches: warm",
        "caches: flushed",
        "search: stopped",
        "database: disconnected",
    ]


def test_lifespan_frameworks() -> None:
    require_redis()
    example = load("lifespan_frameworks")
    order = f"order-{os.getpid()}-{time.monotonic_ns()}"
    with TestClient(example.app) as client:
        assert client.get("/litestar/ping").json() == {"pong": "litestar"}
        deadline = time.monotonic() + 10
        while f"faststream: got {order}" not in example.events:
            assert time.monotonic() < deadline, example.events
            assert client.post(f"/orders/{order}").json() == {"placed": order}
            time.sleep(0.1)
    assert example.events[:2] == ["litestar: started", "faststream: on_startup"]
    assert example.events[-2:] == ["faststream: after_shutdown", "litestar: stopped"]
