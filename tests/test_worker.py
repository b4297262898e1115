"""``python -m fastapi_streamkit worker module:app``, run as a real subprocess."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import anyio
import pytest

from ._redis import REDIS_URL, redis_broker_factory

_LIFESPAN_APP = """
import asyncio, contextlib, os
from starlette.applications import Starlette

@contextlib.asynccontextmanager
async def lifespan(app):
    if os.environ.get("FAIL_STARTUP"):
        raise RuntimeError("database is down")
    print("startup", flush=True)
    yield
    print("shutdown begins", flush=True)
    await asyncio.sleep(float(os.environ.get("SHUTDOWN_SECONDS", "0.3")))  # in-flight work
    print("shutdown done", flush=True)

app = Starlette(lifespan=lifespan)
"""


class Worker:
    """A worker subprocess whose merged output is collected line by line."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self._new = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._new:
                self.lines.append(line.rstrip("\n"))
                self._new.notify_all()

    def wait_for(self, text: str, timeout: float = 15.0) -> None:
        """Block until a line contains ``text``; fail with the output so far otherwise."""
        with self._new:
            found = self._new.wait_for(
                lambda: any(text in line for line in self.lines) or self.proc.poll() is not None,
                timeout,
            )
            if not found or not any(text in line for line in self.lines):
                pytest.fail(f"no {text!r} in the worker's output:\n" + self.output)

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        self.proc.send_signal(signum)
        return self.proc.wait(timeout)

    @property
    def output(self) -> str:
        self._reader.join(0.5 if self.proc.poll() is not None else 0)
        return "\n".join(self.lines)


@contextmanager
def worker(
    directory: Path, source: str, *args: str, env: dict[str, str] | None = None
) -> Iterator[Worker]:
    """Run ``python -m fastapi_streamkit worker <args>`` in ``directory`` holding app_mod.py."""
    (directory / "app_mod.py").write_text(textwrap.dedent(source))
    repo = str(Path(__file__).resolve().parent.parent)
    proc = subprocess.Popen(
        [sys.executable, "-m", "fastapi_streamkit", "worker", *(args or ("app_mod:app",))],
        cwd=directory,
        env={**os.environ, "PYTHONPATH": repo, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        yield Worker(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        assert proc.stdout is not None
        proc.stdout.close()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_runs_the_lifespan_and_stops_gracefully(tmp_path: Path, signum: int) -> None:
    with worker(tmp_path, _LIFESPAN_APP) as running:
        running.wait_for("worker running")
        assert "startup" in running.lines
        assert running.stop(signum) == 0
        output = running.output
    assert output.index("shutdown begins") < output.index("shutdown done")
    assert "worker stopped" in output


def test_startup_failure_exits_non_zero_with_the_error(tmp_path: Path) -> None:
    with worker(tmp_path, _LIFESPAN_APP, env={"FAIL_STARTUP": "1"}) as running:
        assert running.proc.wait(15) == 1
        output = running.output
    assert "the app failed to start" in output and "database is down" in output


def test_shutdown_is_bounded(tmp_path: Path) -> None:
    env = {"SHUTDOWN_SECONDS": "30"}
    with worker(tmp_path, _LIFESPAN_APP, "app_mod:app", "--shutdown-timeout", "0.5", env=env) as w:
        w.wait_for("worker running")
        assert w.stop() == 1
        assert "shutdown did not finish within 0.5s" in w.output


def test_second_signal_stops_at_once(tmp_path: Path) -> None:
    with worker(tmp_path, _LIFESPAN_APP, env={"SHUTDOWN_SECONDS": "30"}) as running:
        running.wait_for("worker running")
        running.proc.send_signal(signal.SIGTERM)
        running.wait_for("shutdown begins")
        assert running.stop(signal.SIGINT) == 1
        assert "second SIGINT: stopping now" in running.output


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("missing_mod:app", "cannot import module 'missing_mod'"),
        ("app_mod:nope", "has no attribute 'nope'"),
        ("app_mod", "expected the app as 'module:attribute'"),
        ("app_mod:VALUE", "not an ASGI application"),
    ],
)
def test_bad_targets_are_usage_errors(tmp_path: Path, target: str, message: str) -> None:
    with worker(tmp_path, _LIFESPAN_APP + "\nVALUE = 3\n", target) as running:
        assert running.proc.wait(15) == 2
        assert message in running.output


def test_an_app_without_lifespan_support_fails(tmp_path: Path) -> None:
    source = """
    async def app(scope, receive, send):
        assert scope["type"] == "http"
    """
    with worker(tmp_path, source) as running:
        assert running.proc.wait(15) == 1
        assert "AssertionError" in running.output


_ROUTER_APP = """
import asyncio, os
from fastapi import FastAPI
from pydantic import BaseModel
from fastapi_streamkit import RedisBroker
from fastapi_streamkit.router import StreamRouter

broker = RedisBroker(os.environ["REDIS_URL"], prefix=os.environ["PREFIX"])
router = StreamRouter(broker=broker)

class Job(BaseModel):
    n: int

@router.subscriber("jobs")
@router.publisher("done")
async def handle(job: Job) -> dict:
    print("handling", job.n, flush=True)
    await asyncio.sleep(1.0)
    return {"n": job.n}

app = FastAPI()
app.include_router(router)
"""


@pytest.mark.anyio
async def test_worker_consumes_and_finishes_in_flight_handler(tmp_path: Path) -> None:
    async with redis_broker_factory() as make:
        client = make()
        await client.start()
        done = client.subscribe("done")
        env = {"REDIS_URL": REDIS_URL, "PREFIX": client.prefix}
        with worker(tmp_path, _ROUTER_APP, env=env) as running:
            await anyio.to_thread.run_sync(running.wait_for, "worker running")
            await client.publish("jobs", b'{"n": 7}')
            await anyio.to_thread.run_sync(running.wait_for, "handling 7")
            code = await anyio.to_thread.run_sync(running.stop)  # SIGTERM mid-handler
            assert code == 0, running.output
        with anyio.fail_after(5):
            message = await anext(done)
        assert json.loads(message.body) == {"n": 7}
        await client.close()
