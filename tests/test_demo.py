"""The demo ``make demo`` starts, run as it does: ``uvicorn examples.demo:app`` in a subprocess.

Real clients over loopback: httpx for the page, the notes and the event streams, the
``websockets`` library for the chat. The browser side is in ``test_demo_browser.py``.
"""

from __future__ import annotations

import json
import re
import signal
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from websockets.sync.client import ClientConnection, connect
from websockets.typing import Subprotocol

from examples.demo import create_app
from examples.demo.notes import Moderator, moderator
from fastapi_streamkit import MemoryBroker
from fastapi_streamkit.testing import TestStreamApp
from tests._redis import REDIS_URL, delete_prefix, require_redis, unique_prefix
from tests._server import serve_process

ROOT = Path(__file__).resolve().parent.parent
STATIC = ROOT / "examples" / "demo" / "static"
ENV = {"PYTHONPATH": str(ROOT), "REDIS_URL": ""}  # the MemoryBroker, whatever the shell says


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    with serve_process("examples.demo:app", env=ENV) as (_, port):
        yield f"http://127.0.0.1:{port}"


def read_events(response: httpx.Response, count: int = 0, until: str = "") -> list[dict[str, str]]:
    """SSE events with an ``id`` (fields as a dict) until there are ``count`` of them, or one
    whose data contains ``until``; bounded by the client's timeouts."""
    events: list[dict[str, str]] = []
    buffer = ""
    for text in response.iter_text():
        buffer += text
        *blocks, buffer = buffer.split("\n\n")
        for block in blocks:
            fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
            if "id" in fields:
                events.append(fields)
                if (until and until in fields["data"]) or len(events) == count:
                    return events
    raise AssertionError(f"the stream ended after {events!r}")


def stream(base_url: str, path: str, last_id: str | None = None) -> Any:
    headers = {} if last_id is None else {"Last-Event-ID": last_id}
    return httpx.stream("GET", base_url + path, headers=headers, timeout=5.0)


def post_note(base_url: str, note: object) -> str:
    response = httpx.post(base_url + "/api/notes", json=note, timeout=5.0)
    assert response.status_code == 202
    return str(response.json()["id"])


def test_the_page_and_its_assets_work_offline(base_url: str) -> None:
    page = httpx.get(base_url + "/", timeout=5.0)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    panels = re.findall(r'data-panel="(\w+)"', page.text)
    assert panels == ["info", "events", "notes", "deadletters", "chat", "status"]
    assert 'href="/asyncapi"' in page.text
    for name in ("app.js", "msgpack.js", "style.css"):
        asset = httpx.get(f"{base_url}/static/{name}", timeout=5.0)
        assert asset.status_code == 200
        assert asset.text == (STATIC / name).read_text()
    # No CDN, no remote script, style or font: the page works offline.
    links = re.findall(r'(?:src|href)="([^"]*)"', page.text)
    assert links and all(link.startswith(("/", "data:")) for link in links), links
    assert re.findall(r'from "([^"]+)"', (STATIC / "app.js").read_text()) == ["./msgpack.js"]
    assert "url(" not in (STATIC / "style.css").read_text()


def test_a_note_is_validated_handled_and_published_as_an_event(base_url: str) -> None:
    with stream(base_url, "/api/events") as events:  # the kept history, then live events
        assert events.headers["content-type"].startswith("text/event-stream")
        post_note(base_url, {"author": "Ada", "text": "darn, streams that never leak"})
        *_, event = read_events(events, until="streams that never leak")
    data = json.loads(event["data"])
    assert data.pop("at")
    assert data == {"kind": "note", "author": "Ada", "text": "***** streams that never leak",
                    "words": 5}  # fmt: skip


@pytest.mark.parametrize(
    ("note", "error"),
    [
        ({"author": "", "text": "hi"}, ["body", "author"]),
        ({"author": "Ada"}, ["body", "text"]),
        ({"author": "Ada", "text": "x" * 281}, ["body", "text"]),
    ],
)
def test_an_invalid_note_becomes_a_dead_letter_with_its_error(
    base_url: str, note: dict[str, str], error: list[str]
) -> None:
    note = {**note, "ref": uuid.uuid4().hex}  # an extra field: ignored by the model
    with stream(base_url, "/api/dead-letters") as letters:
        post_note(base_url, note)
        *_, letter = read_events(letters, until=note["ref"])
    assert letter["event"] == "dead-letter"
    data = json.loads(letter["data"])
    assert json.loads(data["body"]) == note
    assert data["error"]["type"] == "RequestValidationError"
    assert [e["loc"] for e in data["error"]["errors"]] == [error]


def test_events_resume_after_last_event_id(base_url: str) -> None:
    with stream(base_url, "/api/events") as events:
        for n in range(3):
            post_note(base_url, {"author": "Ada", "text": f"resume {n}"})
        *_, first, second, third = read_events(events, until="resume 2")
    assert [json.loads(e["data"])["text"] for e in (first, second, third)] == [
        "resume 0", "resume 1", "resume 2"
    ]  # fmt: skip
    with stream(base_url, "/api/events", last_id=first["id"]) as resumed:
        assert read_events(resumed, 2) == [second, third]
    with stream(base_url, "/api/events") as replayed:  # no Last-Event-ID: the kept history
        history = read_events(replayed, until="resume 2")
    assert history[-3:] == [first, second, third]
    with stream(base_url, "/api/events", last_id="not-an-id") as fresh:  # only new ones
        post_note(base_url, {"author": "Ada", "text": "newest"})
        (event,) = read_events(fresh, 1)
    assert json.loads(event["data"])["text"] == "newest"


def test_drop_streams_ends_the_open_streams_cleanly(base_url: str) -> None:
    with stream(base_url, "/api/events", last_id="not-an-id") as events:  # only new ones
        assert httpx.post(base_url + "/api/drop-streams", timeout=5.0).status_code == 200
        assert "".join(events.iter_text()) == "retry: 1000\n\n"  # ended, not hanging
    assert httpx.get(base_url + "/health", timeout=5.0).status_code == 204  # the server stays


def chat(base_url: str, subprotocols: list[str] | None) -> ClientConnection:
    url = base_url.replace("http://", "ws://") + "/ws/chat"
    offered = None if subprotocols is None else [Subprotocol(p) for p in subprotocols]
    return connect(url, subprotocols=offered, open_timeout=5)


def receive(ws: ClientConnection) -> dict[str, Any]:
    frame = ws.recv(timeout=5)
    decoded = msgspec.msgpack.decode(frame) if isinstance(frame, bytes) else json.loads(frame)
    assert isinstance(decoded, dict)
    return decoded


def test_chat_speaks_messagepack_and_json_to_everyone(base_url: str) -> None:
    with (
        chat(base_url, ["msgpack", "json"]) as ann,
        chat(base_url, ["json"]) as bob,
        chat(base_url, None) as eve,  # offers nothing: JSON
    ):
        assert (ann.subprotocol, bob.subprotocol, eve.subprotocol) == ("msgpack", "json", None)
        ann.send(msgspec.msgpack.encode({"user": "Ann", "text": "hello"}))  # binary: MessagePack
        bob.send(json.dumps({"user": "Bob", "text": "hi"}))  # text: JSON, whatever was agreed
        for ws, kind in ((ann, bytes), (bob, str), (eve, str)):
            frames = [ws.recv(timeout=5), ws.recv(timeout=5)]
            assert all(isinstance(frame, kind) for frame in frames)
        ann.send(json.dumps({"user": "Ann", "text": "json from a msgpack client"}))
        assert receive(eve)["text"] == "json from a msgpack client"
        assert isinstance(ann.recv(timeout=5), bytes)


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        (msgspec.msgpack.encode({"user": "Ann", "text": ""}), "text: String should have at least"),
        (msgspec.msgpack.encode(["not", "a", "map"]), "Input should be a valid dictionary"),
        (b"\xc1", "MessagePack"),  # 0xc1 is never used in MessagePack
        ('{"user": "Ann", "text":', "JSON"),
    ],
)
def test_a_bad_chat_frame_is_answered_to_its_sender_only(
    base_url: str, frame: str | bytes, reason: str
) -> None:
    with chat(base_url, ["msgpack"]) as ann, chat(base_url, ["json"]) as bob:
        ann.send(frame)
        error = receive(ann)
        assert (error["kind"], error["user"]) == ("error", "server")
        assert reason in error["text"]
        ann.send(msgspec.msgpack.encode({"user": "Ann", "text": "still here"}))
        assert receive(ann)["text"] == "still here"  # the socket stays open
        assert receive(bob)["text"] == "still here"  # and Bob never saw the error


def test_the_mounted_sub_app_ran_its_lifespan(base_url: str) -> None:
    first = httpx.get(base_url + "/status/", timeout=5.0).json()
    second = httpx.get(base_url + "/status/", timeout=5.0).json()
    assert first["lifespan"] == "running"
    assert first["started_at"] == second["started_at"]
    assert second["requests"] == first["requests"] + 1


def test_health_info_and_the_asyncapi_document(base_url: str) -> None:
    assert httpx.get(base_url + "/health", timeout=5.0).status_code == 204
    assert httpx.get(base_url + "/api/info", timeout=5.0).json()["broker"] == "MemoryBroker"
    page = httpx.get(base_url + "/asyncapi", timeout=5.0)
    assert page.status_code == 200 and "asyncapi.json" in page.text
    document = httpx.get(base_url + "/asyncapi.json", timeout=5.0).json()
    assert document["asyncapi"] == "3.0.0"
    assert set(document["channels"]) == {
        "notes", "events", "api_events", "api_dead-letters", "ws_chat"
    }  # fmt: skip
    assert set(document["operations"]) >= {"handle_note", "handle_note_publish", "chat_send"}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_the_handler_with_an_overridden_dependency() -> None:
    app = create_app(MemoryBroker())
    app.dependency_overrides[moderator] = lambda: Moderator(["leak"])
    async with TestStreamApp(app, timeout=5) as demo:
        handled = await demo.publish_and_wait("notes", {"author": "Ada", "text": "never leak"})
        assert handled.result.text == "never ****"
        assert [message.topic for message in handled.published] == ["events"]
        invalid = await demo.publish_and_wait("notes", {"author": "Ada", "text": ""})
        assert invalid.attempts == 1 and invalid.dead_letter is not None
        assert invalid.dead_letter.topic == "notes.dlq"


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_stops_the_demo_while_the_page_is_open(signum: signal.Signals) -> None:
    with serve_process("examples.demo:app", env=ENV) as (proc, port):
        with socket.create_connection(("127.0.0.1", port), timeout=5.0) as sock:
            sock.sendall(b"GET /api/events HTTP/1.1\r\nHost: demo\r\n\r\n")
            data = b""
            while b"retry: 1000" not in data:
                data += sock.recv(4096)
            proc.send_signal(signum)
            while chunk := sock.recv(4096):
                data += chunk
        assert data.endswith(b"\r\n0\r\n\r\n")  # the stream ended cleanly
        # uvicorn shuts down, then raises the signal it captured again: SIGTERM's default
        # action ends the process with -SIGTERM, SIGINT's KeyboardInterrupt with status 0.
        assert proc.wait(timeout=5.0) in (0, -signum)


@pytest.mark.redis
def test_on_redis_events_resume_across_a_restart() -> None:
    require_redis()
    env = {**ENV, "REDIS_URL": REDIS_URL, "DEMO_REDIS_PREFIX": unique_prefix()}
    try:
        with serve_process("examples.demo:app", env=env) as (_, port):
            url = f"http://127.0.0.1:{port}"
            assert httpx.get(url + "/api/info", timeout=5.0).json()["broker"] == "RedisBroker"
            with stream(url, "/api/events") as events:
                for text in ("one", "two"):
                    post_note(url, {"author": "Ada", "text": text})
                first, second = read_events(events, 2)
        with serve_process("examples.demo:app", env=env) as (_, port):  # a new process
            url = f"http://127.0.0.1:{port}"
            with stream(url, "/api/events", last_id=first["id"]) as resumed:
                post_note(url, {"author": "Ada", "text": "three"})
                again, third = read_events(resumed, 2)
        assert again == second  # from Redis's history, after the restart
        assert json.loads(third["data"])["text"] == "three"
    finally:
        delete_prefix(REDIS_URL, env["DEMO_REDIS_PREFIX"])
