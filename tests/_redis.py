"""Redis for tests: the shared server (``REDIS_URL``), unique key prefixes, private servers."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from ._server import free_port
from .conftest import require

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")


def redis_answers(url: str = REDIS_URL) -> bool:
    """True when a Redis server answers PING at ``url``."""
    try:
        with redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1) as client:
            return bool(client.ping())
    except (redis.RedisError, OSError):
        return False


def require_redis(url: str = REDIS_URL) -> None:
    """Skip (or fail under STREAMKIT_REQUIRE_REDIS=1) when no Redis answers at ``url``."""
    if not redis_answers(url):
        require("REDIS", f"no Redis at {url}; start one or set REDIS_URL")


def unique_prefix() -> str:
    """A key prefix no other test uses, so tests never see each other's streams."""
    return f"streamkit-test:{uuid.uuid4().hex[:12]}:"


def delete_prefix(url: str, prefix: str) -> None:
    """Delete every key under ``prefix``."""
    with contextlib.suppress(redis.RedisError, OSError):
        with redis.Redis.from_url(url, socket_timeout=2) as client:
            keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
            if keys:
                client.delete(*keys)


@contextlib.asynccontextmanager
async def redis_broker_factory(
    request: pytest.FixtureRequest | None = None, url: str = REDIS_URL
) -> AsyncIterator[Callable[..., Any]]:
    """Yield ``make(**options) -> RedisBroker`` on one fresh prefix; delete its keys after."""
    require_redis(url)
    from fastapi_streamkit.brokers.redis import RedisBroker

    prefix = unique_prefix()
    try:
        yield lambda **options: RedisBroker(url, prefix=prefix, **options)
    finally:
        delete_prefix(url, prefix)


class RedisServer:
    """A private ``redis-server`` on a free port, stopped and restarted by its PID."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10.0) -> None:
        """Start the server (loading ``dump.rdb`` when a previous stop saved one)."""
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.directory),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while not redis_answers(self.url):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server on port {self.port} did not start")
            time.sleep(0.02)

    def stop(self, *, save: bool, timeout: float = 10.0) -> None:
        """Stop it: ``save=True`` snapshots the data first (a clean restart), else SIGKILL."""
        assert self.proc is not None
        if save:
            with redis.Redis.from_url(self.url, socket_timeout=5) as client:
                client.save()
            self.proc.send_signal(signal.SIGTERM)
        else:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout)
        self.proc = None


@contextlib.contextmanager
def private_redis(directory: Path) -> Iterator[RedisServer]:
    """A private Redis server for tests that stop or restart it; killed by PID at the end."""
    if shutil.which("redis-server") is None:
        require("REDIS", "redis-server is not installed (apt-get install redis-server)")
    server = RedisServer(directory)
    server.start()
    try:
        yield server
    finally:
        if server.proc is not None:
            server.proc.kill()
            server.proc.wait(10)
