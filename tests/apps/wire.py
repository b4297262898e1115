"""Wire-level helpers: a raw-socket HTTP/1.1 client that sees chunk framing, and an in-process
ASGI driver with scripted ``receive``/``send``. Every read is bounded by a timeout."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
from starlette.types import Message


class Closed(Exception):
    """The server closed the connection before the awaited bytes arrived."""


class RawClient:
    """One HTTP/1.1 request over a plain socket; the chunked body is read chunk by chunk."""

    def __init__(
        self,
        port: int,
        path: str = "/",
        *,
        method: str = "GET",
        headers: dict[str, str] | None = None,
        rcvbuf: int | None = None,
        timeout: float = 5.0,
        send: bool = True,
    ) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:  # before connect, so the advertised window stays small
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect(("127.0.0.1", port))
        self.buffer = b""
        self.raw = b""  # every byte received, framing included
        lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        self.request = ("\r\n".join(lines) + "\r\n\r\n").encode()
        if send:
            self.sock.sendall(self.request)

    def _fill(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise Closed(f"connection closed; received so far: {self.raw[-300:]!r}")
        self.buffer += data
        self.raw += data

    def _read_until(self, marker: bytes) -> bytes:
        while marker not in self.buffer:
            self._fill()
        head, _, self.buffer = self.buffer.partition(marker)
        return head

    def _read_exactly(self, size: int) -> bytes:
        while len(self.buffer) < size:
            self._fill()
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def read_head(self) -> tuple[int, dict[str, str]]:
        """Status code and headers (lower-case names; repeated ones joined by '\\n')."""
        head = self._read_until(b"\r\n\r\n").decode("latin-1").split("\r\n")
        status = int(head[0].split(" ")[1])
        headers: dict[str, str] = {}
        for line in head[1:]:
            name, _, value = line.partition(":")
            key = name.strip().lower()
            headers[key] = f"{headers[key]}\n{value.strip()}" if key in headers else value.strip()
        return status, headers

    def read_chunk(self) -> bytes | None:
        """The next chunk's data, or None after the terminating zero-size chunk."""
        size = int(self._read_until(b"\r\n").split(b";")[0], 16)
        if size == 0:
            self._read_until(b"\r\n")
            return None
        data = self._read_exactly(size + 2)
        assert data.endswith(b"\r\n"), data[-10:]
        return data[:-2]

    def read_body_until(self, marker: bytes, *, count: int = 1) -> bytes:
        """Body bytes (chunks joined) until ``marker`` was seen ``count`` times."""
        body = b""
        while body.count(marker) < count:
            chunk = self.read_chunk()
            if chunk is None:
                raise Closed(f"the body ended before {count}x {marker!r}: {body[-300:]!r}")
            body += chunk
        return body

    def read_to_end(self) -> tuple[bytes, bool]:
        """Read the rest of the body: ``(body, True)`` at the terminator, ``(body, False)`` if
        the connection closed first (a truncated transfer)."""
        body = b""
        try:
            while (chunk := self.read_chunk()) is not None:
                body += chunk
        except Closed:
            return body, False
        return body, True

    def close(self) -> None:
        self.sock.close()


def wait_for(predicate: Callable[[], bool], timeout: float = 5.0, what: str = "") -> None:
    """Poll ``predicate`` every 5 ms until it is true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(0.005)


@dataclass
class Marks:
    """Thread-safe record of when named things happened (a source's ``finally``, a yield)."""

    times: dict[str, list[float]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def hit(self, name: str) -> None:
        with self.lock:
            self.times.setdefault(name, []).append(time.monotonic())

    def count(self, name: str) -> int:
        with self.lock:
            return len(self.times.get(name, []))

    def first(self, name: str) -> float:
        with self.lock:
            return self.times[name][0]


class ASGICall:
    """Drive an ASGI app in-process: record sent messages with their times; disconnect on cue."""

    def __init__(
        self,
        *,
        method: str = "GET",
        path: str = "/",
        spec_version: str = "2.3",
        headers: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        self.scope: dict[str, Any] = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": spec_version},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "root_path": "",
            "query_string": b"",
            "headers": [(b"host", b"testserver"), *(headers or [])],
            "client": ("127.0.0.1", 1234),
            "server": ("127.0.0.1", 80),
            "state": {},
        }
        self.messages: list[Message] = []
        self.times: list[float] = []
        self.disconnected = anyio.Event()
        self.requested = False
        self.on_send: Callable[[Message], None] | None = None

    async def receive(self) -> Message:
        if not self.requested:
            self.requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        if not self.disconnected.is_set():  # like uvicorn: a pending disconnect returns at once
            await self.disconnected.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        self.messages.append(message)
        self.times.append(time.monotonic())
        if self.on_send is not None:
            self.on_send(message)

    @property
    def starts(self) -> list[Message]:
        return [m for m in self.messages if m["type"].endswith("http.response.start")]

    @property
    def body(self) -> bytes:
        return b"".join(
            bytes(m.get("body", b"")) for m in self.messages if m["type"].endswith("body")
        )

    @property
    def ended(self) -> bool:
        """True when the final ``more_body=False`` message was sent."""
        return any(
            m["type"].endswith("http.response.body") and not m.get("more_body", False)
            for m in self.messages
        )

    def headers(self) -> dict[str, str]:
        (start,) = self.starts
        return {k.decode(): v.decode() for k, v in start["headers"]}
