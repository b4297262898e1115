"""The examples of docs/connections.md, run: each module is loaded fresh from docs/examples/."""

from __future__ import annotations

import logging

import msgspec
import pytest
from fastapi.testclient import TestClient
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from ._examples import load
from ._server import serve


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        ("application/vnd.msgpack", "application/vnd.msgpack"),
        ("application/json;q=0.5, application/*", "application/vnd.msgpack"),
        ("*/*", "application/json"),
        (None, "application/json"),
        ("text/html", None),
    ],
)
@pytest.mark.parametrize("body_format", ["json", "msgpack"])
def test_negotiation(accept: str | None, expected: str | None, body_format: str) -> None:
    example = load("connections_negotiation")
    order = {"sku": "A-1", "qty": 2}
    if body_format == "json":
        content, ctype = msgspec.json.encode(order), "application/json"
    else:
        content, ctype = msgspec.msgpack.encode(order), "application/vnd.msgpack"
    headers = {"content-type": ctype, **({"accept": accept} if accept else {})}
    with TestClient(example.app) as client:
        response = client.post("/api/orders", content=content, headers=headers)
    if expected is None:
        assert response.status_code == 406
        return
    assert response.headers["content-type"].startswith(expected)
    decode = msgspec.msgpack.decode if "msgpack" in expected else msgspec.json.decode
    assert decode(response.content) == {"received": order, "status": "accepted"}


def test_negotiation_bad_msgpack_is_a_400() -> None:
    example = load("connections_negotiation")
    with TestClient(example.app) as client:
        response = client.post(
            "/api/orders", content=b"\xc1", headers={"content-type": "application/vnd.msgpack"}
        )
    assert response.status_code == 400
    assert "invalid MessagePack body" in response.json()["detail"]


@pytest.mark.anyio
async def test_websocket_chat(caplog: pytest.LogCaptureFixture) -> None:
    example = load("connections_websocket")
    with serve(example.app, log_config=None) as server:
        base = f"ws://127.0.0.1:{server.port}/v1/chat"
        async with connect(f"{base}?user=ann", origin="http://localhost:8000") as client:  # type: ignore[arg-type]
            await client.send(msgspec.msgpack.encode({"room": "r", "text": "hi"}))
            assert msgspec.msgpack.decode(await client.recv()) == {
                "room": "r",
                "text": "hi",
                "user": "ann",
            }
            await client.send(msgspec.msgpack.encode({"room": "r"}))
            (error,) = msgspec.msgpack.decode(await client.recv())["error"]
            assert error["loc"] == ["text"] and error["type"] == "missing"
            await client.send("not binary")
            with pytest.raises(ConnectionClosed) as closed:
                await client.recv()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1003
        with pytest.raises(InvalidStatus) as refused:
            async with connect(f"{base}?user=ann", origin="https://evil.example"):  # type: ignore[arg-type]
                pass  # pragma: no cover
        assert refused.value.response.status_code == 403
        with pytest.raises(InvalidStatus):  # the include-level dependency refuses: no user
            async with connect(base):
                pass  # pragma: no cover
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_sessions() -> None:
    example = load("connections_sessions")
    with TestClient(example.app) as client:
        assert client.get("/me").json() == {}
        assert client.post("/login/ann").json() == {"hello": "ann"}
        assert client.get("/me").json() == {"user": "ann", "at": "2025-01-01T00:00:00Z"}
        assert "session=null" in client.post("/logout").headers["set-cookie"]
        assert client.get("/me").json() == {}
