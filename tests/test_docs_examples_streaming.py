"""The examples of docs/streaming.md and docs/sse.md, run over a real uvicorn server."""

from __future__ import annotations

import functools
import json
import operator
import socket
import time
from collections.abc import Callable, Iterator
from types import ModuleType

import httpx
import pytest

from tests._server import Running, free_port, serve

from ._examples import load


@pytest.fixture
def example(request: pytest.FixtureRequest) -> Iterator[tuple[ModuleType, Running]]:
    module = load(request.param)
    with serve(module.app) as running:
        yield module, running


def wait_until(predicate: Callable[[], object], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"still false after {timeout} s")
        time.sleep(0.01)


def open_raw(port: int, path: str, *, rcvbuf: int | None = None) -> socket.socket:
    sock = socket.socket()
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(5.0)
    sock.connect(("127.0.0.1", port))
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: docs\r\n\r\n".encode())
    return sock


def read_until(sock: socket.socket, marker: bytes) -> bytes:
    data = b""
    while marker not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"connection closed before {marker!r}: {data!r}")
        data += chunk
    return data


def read_to_eof(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def sse_blocks(url: str, count: int, headers: dict[str, str] | None = None) -> list[str]:
    blocks: list[str] = []
    buffer = ""
    with httpx.stream("GET", url, headers=headers, timeout=5.0) as response:
        assert response.status_code == 200, response.read()
        for text in response.iter_text():
            *done, buffer = (buffer + text).split("\n\n")
            blocks += [block for block in done if block]
            if len(blocks) >= count:
                return blocks[:count]
    return blocks


def fields(block: str) -> dict[str, str]:
    return dict(line.split(": ", 1) for line in block.splitlines())


# -- docs/streaming.md ------------------------------------------------------------------------


@pytest.mark.parametrize("example", ["streaming_first"], indirect=True)
def test_first_stream_ticks_until_the_client_leaves(
    example: tuple[ModuleType, Running], capsys: pytest.CaptureFixture[str]
) -> None:
    _, running = example
    sock = open_raw(running.port, "/ticks")
    try:
        read_until(sock, b'data: {"tick":2}\n\n')
    finally:
        sock.close()
    wait_until(lambda: "client gone after 2 ticks" in capsys.readouterr().out, timeout=2.0)


@pytest.mark.parametrize("example", ["streaming_basic"], indirect=True)
def test_basic_streams(example: tuple[ModuleType, Running]) -> None:
    module, running = example
    text = httpx.get(running.url + "/countdown", timeout=5.0)
    assert text.text == "3...\n2...\n1...\nliftoff!\n"
    assert text.headers["content-type"] == "text/plain; charset=utf-8"
    rows = httpx.get(running.url + "/rows.jsonl", timeout=5.0)
    assert rows.headers["content-type"] == "application/jsonl"
    assert rows.headers["x-total-count"] == "3"
    assert rows.cookies["export"] == "rows"
    assert [json.loads(line)["id"] for line in rows.text.splitlines()] == [1, 2, 3]
    wait_until(lambda: module.app.state.reports == ["rows exported"])
    assert httpx.get(running.url + "/lazy", timeout=5.0).text == "2...\n1...\nliftoff!\n"


@pytest.mark.parametrize("example", ["streaming_cleanup"], indirect=True)
def test_disconnect_runs_the_finally_of_an_idle_source(
    example: tuple[ModuleType, Running],
) -> None:
    module, running = example
    for user in ("ada", "grace"):
        sock = open_raw(running.port, f"/updates/{user}")
        try:
            assert f'data: {{"hello":"{user}"}}\n\n'.encode() in read_until(sock, b'"}\n\n')
            assert user not in module.app.state.closed
        finally:
            sock.close()
        wait_until(functools.partial(operator.contains, module.app.state.closed, user), 2.0)
    assert module.app.state.closed == ["ada", "grace"]


@pytest.mark.parametrize("example", ["streaming_head"], indirect=True)
def test_head_sends_headers_and_never_starts_the_export(
    example: tuple[ModuleType, Running],
) -> None:
    module, running = example
    head = httpx.head(running.url + "/export.csv", timeout=5.0)
    assert head.status_code == 200
    assert head.headers["content-type"] == "text/csv; charset=utf-8"
    assert head.headers["content-disposition"] == "attachment; filename=export.csv"
    assert head.content == b""
    assert module.app.state.exports_started == 0
    assert httpx.get(running.url + "/export.csv", timeout=5.0).text == "id,name\n1,Ada\n"
    assert module.app.state.exports_started == 1


@pytest.mark.parametrize("example", ["streaming_send_timeout"], indirect=True)
def test_a_client_that_stops_reading_is_aborted(example: tuple[ModuleType, Running]) -> None:
    module, running = example
    sock = open_raw(running.port, "/telemetry", rcvbuf=4096)
    try:
        wait_until(lambda: module.app.state.aborted, timeout=20.0)  # send_timeout is 2 s
    finally:
        sock.close()
    [sent] = module.app.state.aborted
    assert sent < 1000  # a bounded amount went out (a few MB of socket buffers at most)


@pytest.mark.parametrize("example", ["streaming_sync"], indirect=True)
def test_open_sync_streams_leave_sync_endpoints_free(example: tuple[ModuleType, Running]) -> None:
    module, running = example
    streams = [open_raw(running.port, "/feed") for _ in range(50)]  # > FastAPI's 40 threads
    try:
        for sock in streams:
            assert b'{"n":1}\n' in read_until(sock, b'{"n":1}\n')
        health = httpx.get(running.url + "/health", timeout=5.0)
        assert health.json() == {"status": "ok"}
    finally:
        module.app.state.release.set()
        for sock in streams:
            sock.close()


def test_request_shutdown_ends_the_streams_of_a_server_in_a_thread() -> None:
    module = load("streaming_shutdown")
    port = free_port()
    server, thread = module.serve_in_thread(port)
    wait_until(lambda: server.started)
    sock = open_raw(port, "/heartbeat")
    try:
        body = read_until(sock, b'data: {"beat":2}')
        module.stop(server, thread)
        body += read_to_eof(sock)
        assert body.endswith(b"\n\n\r\n0\r\n\r\n")  # whole events, then a clean end
    finally:
        sock.close()
        if thread.is_alive():
            server.force_exit = True
            thread.join(5)
    assert not thread.is_alive()
    [beats] = module.app.state.finished
    assert beats >= 2


# -- docs/sse.md ------------------------------------------------------------------------------


@pytest.mark.parametrize("example", ["sse_basic"], indirect=True)
def test_items_on_the_wire(example: tuple[ModuleType, Running]) -> None:
    _, running = example
    response = httpx.get(running.url + "/prices", timeout=5.0)
    assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert response.text == (
        "retry: 5000\n\n"
        ": prices for today\n\n"
        'data: {"symbol":"ACME","cents":1250}\n\n'
        'data: {"symbol":"INIT","cents":990}\n\n'
        'event: close\ndata: {"closed_at":"2026-01-02T17:30:00"}\nid: 2026-01-02\n\n'
        "data: market\ndata: closed\n\n"
        "event: bye\ndata: already encoded\n\n"
    )


@pytest.mark.parametrize("example", ["sse_pings"], indirect=True)
def test_pings_while_idle(example: tuple[ModuleType, Running]) -> None:
    _, running = example
    assert sse_blocks(running.url + "/alerts", 2) == [": ping", ": ping"]


@pytest.mark.parametrize(
    ("example", "last_event_id", "ids"),
    [
        ("sse_resume", None, ["1", "2", "3", "4", "5"]),
        ("sse_resume", "3", ["4", "5"]),
        ("sse_resume", "five", ["1", "2", "3", "4", "5"]),
    ],
    indirect=["example"],
)
def test_news_resume_after_last_event_id(
    example: tuple[ModuleType, Running], last_event_id: str | None, ids: list[str]
) -> None:
    _, running = example
    headers = None if last_event_id is None else {"Last-Event-ID": last_event_id}
    blocks = sse_blocks(running.url + "/news", 5, headers)
    assert [fields(block)["id"] for block in blocks] == ids
    assert fields(blocks[-1]) == {"event": "news", "data": "final whistle", "id": "5"}


@pytest.mark.parametrize("example", ["sse_resume"], indirect=True)
def test_chat_resumes_from_the_broker_history(example: tuple[ModuleType, Running]) -> None:
    _, running = example
    ids = [
        httpx.post(running.url + "/chat", params={"text": text}, timeout=5.0).json()["id"]
        for text in ("first", "second", "third")
    ]
    blocks = sse_blocks(running.url + "/chat", 2, {"Last-Event-ID": ids[0]})
    assert [fields(block) for block in blocks] == [
        {"id": ids[1], "data": "second"},
        {"id": ids[2], "data": "third"},
    ]


@pytest.mark.parametrize("example", ["sse_typed"], indirect=True)
def test_typed_items_are_validated_and_serialized(example: tuple[ModuleType, Running]) -> None:
    _, running = example
    response = httpx.get(running.url + "/orders", timeout=5.0)
    assert response.headers["x-tenant"] == "acme"
    assert response.text == (
        'data: {"id":1,"total":9.5}\n\n'
        'data: {"id":2,"total":20.0}\n\n'
        'data: {"id":3,"total":7.25}\n\n'
    )
    head = httpx.head(running.url + "/orders", timeout=5.0)
    assert head.status_code == 200
    assert head.headers["content-type"].startswith("text/event-stream")
    assert head.headers["x-tenant"] == "acme"
    assert head.content == b""
    lines = httpx.get(running.url + "/orders.jsonl", timeout=5.0)
    assert lines.cookies["cursor"] == "2"
    assert lines.text == '{"id":1,"total":9.5}\n{"id":2,"total":20.0}\n'


@pytest.mark.parametrize("example", ["sse_typed"], indirect=True)
def test_an_invalid_item_aborts_the_stream(example: tuple[ModuleType, Running]) -> None:
    _, running = example
    sock = open_raw(running.port, "/broken")
    try:
        body = read_to_eof(sock)
    finally:
        sock.close()
    assert body.startswith(b"HTTP/1.1 200")
    assert b'data: {"id":1,"total":1.0}\n\n' in body
    assert not body.endswith(b"0\r\n\r\n")  # truncated: no clean end of the chunked body


@pytest.mark.parametrize("example", ["sse_typed"], indirect=True)
def test_openapi_documents_the_item_model(example: tuple[ModuleType, Running]) -> None:
    _, running = example
    schema = httpx.get(running.url + "/openapi.json", timeout=5.0).json()
    assert set(schema["components"]["schemas"]["Order"]["properties"]) == {"id", "total"}
    assert "InternalOrder" not in schema["components"]["schemas"]
    for path, media_type in (
        ("/orders", "text/event-stream"),
        ("/orders.jsonl", "application/jsonl"),
    ):
        content = schema["paths"][path]["get"]["responses"]["200"]["content"]
        assert "#/components/schemas/Order" in json.dumps(content[media_type])


@pytest.mark.parametrize("example", ["sse_nginx"], indirect=True)
def test_events_pass_compression_uncompressed_and_one_by_one(
    example: tuple[ModuleType, Running],
) -> None:
    _, running = example
    headers = {"accept-encoding": "gzip"}
    with httpx.stream("GET", running.url + "/progress", headers=headers, timeout=5.0) as response:
        assert "content-encoding" not in response.headers
        assert response.headers["x-accel-buffering"] == "no"
        assert response.headers["cache-control"] == "no-cache"
        chunks = response.iter_raw()
        assert next(chunks) == b'data: {"percent":0}\n\n'  # not held back until the end
        rest = b"".join(chunks)
    assert rest.count(b"data: ") == 4
