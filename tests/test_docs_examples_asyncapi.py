"""docs/examples/asyncapi_app.py: the app works end to end, and its document describes it."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import anyio
import httpx
from websockets.sync.client import connect

from tests._asyncapi_schema import resolve, validate_asyncapi
from tests._server import serve

EXAMPLE = Path(__file__).resolve().parents[1] / "docs" / "examples" / "asyncapi_app.py"
ORDER = {"id": 7, "amount": 12.5, "ship_to": {"city": "Lyon", "country": "FR"}}


def load_example() -> ModuleType:
    """A fresh copy of the example module (its router and broker are new each time)."""
    spec = importlib.util.spec_from_file_location("asyncapi_app_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def first_shipment(url: str) -> dict[str, Any]:
    """Post orders until the SSE stream delivers a shipment (the stream subscribes lazily)."""
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        received: dict[str, Any] = {}

        async def listen() -> None:
            async with client.stream("GET", "/shipments") as response:
                assert response.headers["content-type"].startswith("text/event-stream")
                async for line in response.aiter_lines():
                    if line.startswith("data:"):
                        received.update(json.loads(line[5:]))
                        return

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(listen)
                while not received:
                    placed = await client.post(
                        "/orders/eu", json=ORDER, headers={"x-tenant": "acme"}
                    )
                    assert placed.status_code == 202, placed.text
                    await anyio.sleep(0.1)
        return received


def test_example_streams_what_its_document_describes() -> None:
    example = load_example()
    with serve(example.app) as running:
        shipment = anyio.run(first_shipment, running.url)
        assert shipment == {"order_id": 7, "carrier": "eu-post/acme", "ship_to": ORDER["ship_to"]}
        assert example.audit_log and example.audit_log[0].order_id == 7  # the broadcast one

        with connect(running.url.replace("http", "ws") + "/chat/lobby", open_timeout=5) as ws:
            ws.send(json.dumps({"author": "ann", "text": "hi"}))
            assert json.loads(ws.recv(timeout=5)) == {"author": "lobby/ann", "text": "hi"}

        document = httpx.get(running.url + "/asyncapi.json", timeout=5).json()
        page = httpx.get(running.url + "/asyncapi", timeout=5)

    validate_asyncapi(document)
    assert page.status_code == 200 and 'data-source="asyncapi.json"' in page.text
    assert document["servers"]["http"]["host"] == running.url.removeprefix("http://")
    addresses = {channel["address"] for channel in document["channels"].values()}
    assert addresses == {"orders.{region}", "orders.shipped", "/shipments", "/chat/{room}"}
    actions = {key: op["action"] for key, op in document["operations"].items()}
    assert actions == {
        "ship": "receive",
        "audit": "receive",
        "ship_publish": "send",
        "shipments": "send",
        "chat_receive": "receive",
        "chat_send": "send",
    }
    (ship_message,) = document["operations"]["ship"]["messages"]
    message = resolve(document, ship_message["$ref"])
    assert message["payload"] == {"$ref": "#/components/schemas/Order"}
    assert message["headers"]["properties"]["x-tenant"]["description"] == (
        "The shop the order belongs to"
    )
    schemas = document["components"]["schemas"]
    assert sorted(schemas) == ["Address", "ChatMessage", "Order", "Shipment"]
    assert schemas["Order"]["properties"]["amount"]["exclusiveMinimum"] == 0
