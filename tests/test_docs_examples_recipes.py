"""The examples of docs/recipes.md and the README, run; and the API page checked against
``__all__``. Streams run over a real uvicorn (in a thread, or in subprocesses for workers)."""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from websockets.sync.client import connect

import fastapi_streamkit
import fastapi_streamkit.testing
from fastapi_streamkit.testing import TestStreamApp
from tests._redis import REDIS_URL, delete_prefix, require_redis, unique_prefix
from tests._server import serve, serve_process

from ._examples import EXAMPLES, load

ROOT = Path(__file__).resolve().parents[1]


def read_events(response: httpx.Response, count: int | None = None) -> list[dict[str, str]]:
    """SSE events (fields as a dict, comments and bare ``retry:`` skipped) until ``count``, or
    until the stream ends; ``\\r\\n`` line ends (sse-starlette's) read like ``\\n``."""
    events: list[dict[str, str]] = []
    buffer = ""
    for text in response.iter_text():
        buffer += text.replace("\r\n", "\n")
        *blocks, buffer = buffer.split("\n\n")
        for block in blocks:
            fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
            if "data" in fields:
                events.append(fields)
        if count is not None and len(events) >= count:
            return events
    assert count is None, f"the stream ended after {events!r}"
    return events


# -- README ------------------------------------------------------------------------------


async def sse_body(app: Any, path: str, last_id: str, until: bytes) -> bytes:
    """Call the ASGI app directly and collect its body until ``until`` shows up."""
    body = b""
    done = anyio.Event()
    scope = {
        "type": "http", "asgi": {"version": "3.0", "spec_version": "2.4"}, "http_version": "1.1",
        "method": "GET", "scheme": "http", "path": path, "raw_path": path.encode(),
        "query_string": b"", "root_path": "", "headers": [(b"last-event-id", last_id.encode())],
        "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80), "state": {},
    }  # fmt: skip
    requested = False

    async def receive() -> dict[str, Any]:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await done.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal body
        body += message.get("body", b"")
        if until in body:
            done.set()

    with anyio.fail_after(5):
        await app(scope, receive, send)
    return body


def test_readme_shows_the_example_and_it_runs() -> None:
    source = (EXAMPLES / "readme_example.py").read_text()
    readme = (ROOT / "README.md").read_text()
    first_screen = readme.split("## Quickstart")[0]
    assert f"```python\n{source}```" in first_screen
    example = load("readme_example")

    async def main() -> None:
        async with TestStreamApp(example.app, timeout=5) as stream:
            first = await stream.publish_and_wait("orders", {"id": "A-1"})
            second = await stream.publish_and_wait("orders", {"id": "A-2"})
            assert first.result == {"order": "A-1", "status": "shipped"}
            (shipped_first,) = first.published
            (shipped_second,) = second.published
            body = await sse_body(example.app, "/shipped", shipped_first.id, b"A-2")
        # the stream resumed after the first shipment: only the second one is sent
        assert body.decode() == (
            f'data: {{"order":"A-2","status":"shipped"}}\nid: {shipped_second.id}\n\n'
        )

    anyio.run(main)


# -- SSE behind nginx ----------------------------------------------------------------------


def test_nginx_recipe_streams_unbuffered_and_sees_the_forwarded_client() -> None:
    example = load("recipes_nginx")
    with serve(example.app, proxy_headers=True, forwarded_allow_ips="127.0.0.1") as running:
        url = running.url
        with httpx.stream("GET", url + "/events/orders", timeout=5.0) as events:
            assert events.headers["x-accel-buffering"] == "no"  # nginx: do not buffer this
            assert events.headers["cache-control"] == "no-cache"
            assert events.headers["content-type"].startswith("text/event-stream")
            httpx.post(url + "/orders", json={"sku": "A-1"}, timeout=5.0)
            # the stream never ends: the event arriving proves nothing holds it back
            (event,) = read_events(events, 1)
        assert json.loads(event["data"]) == {"sku": "A-1"}
        forwarded = {"X-Forwarded-For": "203.0.113.7"}
        whoami = httpx.get(url + "/whoami", headers=forwarded, timeout=5.0)
        assert whoami.json() == {"client": "203.0.113.7"}
        with connect(url.replace("http", "ws") + "/ws/echo", open_timeout=5) as ws:
            ws.send("ping")
            assert ws.recv(timeout=5) == "ping"


def test_nginx_config_keeps_idle_streams_and_upgrades_websockets() -> None:
    conf = (EXAMPLES / "recipes_nginx.conf").read_text()
    timeout = re.search(r"proxy_read_timeout (\d+)([smh]);", conf)
    assert timeout is not None
    seconds = int(timeout[1]) * {"s": 1, "m": 60, "h": 3600}[timeout[2]]
    assert seconds > load("recipes_nginx").PING_INTERVAL  # pings keep idle streams open
    for directive in (
        "proxy_http_version 1.1;",
        "proxy_set_header Upgrade $http_upgrade;",
        "proxy_set_header Connection $connection_upgrade;",
        "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
    ):
        assert directive in conf
    assert "proxy_buffering off" not in conf.replace('"proxy_buffering off"', "")


# -- several workers on Redis ----------------------------------------------------------------


def wait_healthy(url: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/health", timeout=2.0).status_code == 204:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url}/health never answered 204")


@pytest.mark.redis
def test_workers_recipe_handles_each_job_once_across_processes() -> None:
    require_redis()
    env = {"PYTHONPATH": str(ROOT), "REDIS_URL": REDIS_URL, "REDIS_PREFIX": unique_prefix()}
    target = "docs.examples.recipes_workers:app"
    worker = subprocess.Popen(
        [sys.executable, "-m", "fastapi_streamkit", "worker", target],
        env={**os.environ, **env},
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        with serve_process(target, "--workers", "2", env=env) as (server, port):
            url = f"http://127.0.0.1:{port}"
            wait_healthy(url)
            with httpx.stream("GET", url + "/jobs/done", timeout=10.0) as results:
                for job in range(12):
                    response = httpx.post(url + "/jobs", json={"id": job}, timeout=5.0)
                    assert response.status_code == 202
                done = [json.loads(event["data"]) for event in read_events(results, 12)]
            server.send_signal(signal.SIGTERM)  # uvicorn's manager stops its workers
            assert server.wait(timeout=15) == 0
        assert sorted(result["id"] for result in done) == list(range(12))  # each exactly once
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=15) == 0, worker.stderr.read() if worker.stderr else ""
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait(timeout=5)
        if worker.stderr:
            worker.stderr.close()
        delete_prefix(REDIS_URL, env["REDIS_PREFIX"])


# -- testing with dependency_overrides -------------------------------------------------------


def test_testing_recipe_passes_under_pytest() -> None:
    command = [sys.executable, "-m", "pytest", str(EXAMPLES / "recipes_testing.py")]
    result = subprocess.run(
        [*command, "-q", "-p", "no:cacheprovider"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 passed" in result.stdout


# -- migrating -------------------------------------------------------------------------------


def test_faststream_migration_gives_the_same_results() -> None:
    from faststream.redis import TestRedisBroker

    with warnings.catch_warnings():  # FastStream 0.7 announces a move of its FastAPI module
        warnings.simplefilter("ignore", DeprecationWarning)
        before = load("recipes_faststream_before")
    after = load("recipes_faststream_after")
    order = {"sku": "A-1", "quantity": 2}

    async def main() -> None:
        async with TestRedisBroker(before.router.broker) as broker:  # no Redis needed
            await broker.publish(before.Order(**order), "orders")
            before.priced.mock.assert_called_once_with({"sku": "A-1", "total": 24.0})
        async with TestStreamApp(after.app, lifespan=False) as stream:  # no Redis needed
            handled = await stream.publish_and_wait("orders", order)
            assert handled.result == {"sku": "A-1", "total": 24.0}
            assert [message.topic for message in handled.published] == ["orders.priced"]
            assert json.loads(handled.published[0].body) == handled.result

    anyio.run(main)
    schema_paths = {"/asyncapi", "/asyncapi.json"}
    assert schema_paths <= {getattr(route, "path", "") for route in after.router.routes}


@pytest.mark.parametrize(("last_id", "ids"), [(None, ["1", "2", "3"]), ("1", ["2", "3"])])
def test_sse_starlette_migration_sends_the_same_events(last_id: str | None, ids: list[str]) -> None:
    streams = []
    headers = {} if last_id is None else {"Last-Event-ID": last_id}
    for name in ("recipes_sse_starlette_before", "recipes_sse_starlette_after"):
        with serve(load(name).app) as running:
            with httpx.stream("GET", running.url + "/scores", headers=headers, timeout=5) as r:
                assert r.headers["content-type"].startswith("text/event-stream")
                streams.append(read_events(r))
    before, after = ([{**e, "data": json.loads(e["data"])} for e in events] for events in streams)
    assert after == before  # json.dumps puts spaces after ":", EventStream does not
    assert after == [{"event": "score", "id": i, "data": {"goal": int(i)}} for i in ids]


# -- pages -----------------------------------------------------------------------------------


def test_api_page_documents_every_public_name() -> None:
    page = (ROOT / "docs" / "api.md").read_text()
    documented = set()
    for path in re.findall(r"^::: ([\w.]+)$", page, flags=re.MULTILINE):
        module, _, name = path.rpartition(".")
        target = importlib.import_module(path) if path == "fastapi_streamkit.testing" else None
        documented.add(id(target or getattr(importlib.import_module(module), name)))
    public = [name for name in fastapi_streamkit.__all__ if name != "__version__"]
    missing = [name for name in public if id(getattr(fastapi_streamkit, name)) not in documented]
    missing += [
        f"testing.{name}"
        for name in fastapi_streamkit.testing.__all__
        if id(getattr(fastapi_streamkit.testing, name)) not in documented
    ]
    assert missing == []
    assert "__version__" in page


def test_recipes_page_includes_every_recipe_file() -> None:
    page = (ROOT / "docs" / "recipes.md").read_text()
    included = set(re.findall(r'--8<-- "docs/examples/([\w.]+)"', page))
    files = {path.name for path in EXAMPLES.glob("recipes_*")}
    assert files and files <= included
