"""Helpers shared by the benchmark scripts (not a benchmark itself).

Driving an ASGI app in-process: an HTTP scope, and a ``receive`` that hands over the request
once and then waits until the benchmark disconnects the client (never, during a throughput run).
"""

from __future__ import annotations

import platform
import statistics
import sys
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import anyio

# `python benchmarks/x.py` puts benchmarks/ first on sys.path, where benchmarks/redis.py would
# shadow the redis package for every later import: take it off once this module is imported.
_HERE = str(Path(__file__).resolve().parent)
sys.path[:] = [p for p in sys.path if not p or str(Path(p).resolve()) != _HERE]


def http_scope(path: str, query: str = "", *, spec: str = "2.3") -> dict[str, Any]:
    """A GET scope as uvicorn builds it; ``spec`` is the ASGI HTTP spec version reported."""
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": spec},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": query.encode(),
        "headers": [(b"host", b"127.0.0.1:8000"), (b"accept", b"text/event-stream")],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }


class Client:
    """The client side of one in-process request: ``receive`` gives the request once, then
    blocks until `disconnect()` or the end of the response body (as uvicorn does, Litestar
    waits for that ``http.disconnect``); ``send`` counts body bytes."""

    __slots__ = ("_gone", "_requested", "body_bytes", "ended", "started")

    def __init__(self) -> None:
        self._gone = anyio.Event()
        self._requested = False
        self.body_bytes = 0
        self.started = False
        self.ended = False

    async def receive(self) -> dict[str, Any]:
        if not self._requested:
            self._requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await self._gone.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body":
            self.body_bytes += len(message.get("body", b""))
            if not message.get("more_body", False):
                self.ended = True
                self._gone.set()  # as servers do: once the response is complete, it is over
        elif message["type"] == "http.response.start":
            self.started = True

    def disconnect(self) -> None:
        """The client goes away: the next (or pending) ``receive`` returns ``http.disconnect``."""
        self._gone.set()


def median(values: Sequence[float]) -> float:
    """The median of a non-empty sequence."""
    return statistics.median(values)


def machine_notes() -> str:
    """Python, platform and the versions of the packages compared."""
    names = ("fastapi", "starlette", "uvicorn", "sse-starlette", "litestar", "fastapi-streamkit")
    versions = []
    for name in names:
        try:
            versions.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{name} (not installed)")
    cpu = platform.processor() or platform.machine()
    return f"Python {sys.version.split()[0]} on {platform.system()} {cpu}; " + ", ".join(versions)
