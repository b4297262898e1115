"""Black-box contract tests: DESIGN.md "AsyncAPI — asyncapi.py" and ``asyncapi_path``.

Operations are found by what they are (action and channel address), never by the keys the
package happens to give them; every document is validated against the official AsyncAPI
3.0.0 JSON schema (tests/_asyncapi_schema.py) and every ``$ref`` is followed.
"""

import inspect
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Any

import pytest
from fastapi import APIRouter, Depends, FastAPI, Header
from fastapi.testclient import TestClient
from pydantic import BaseModel
from starlette.applications import Starlette

from fastapi_streamkit import EventStream, JSONLines, StreamRouter, WebSocket, get_asyncapi
from tests._asyncapi_schema import resolve, validate_asyncapi


class Address(BaseModel):
    city: str
    zip: str


class Order(BaseModel):
    id: int
    ship_to: Address


class Shipped(BaseModel):
    order_id: int
    to: Address


class Chat(BaseModel):
    text: str


@dataclass
class Tick:
    seq: int


def deref(document: dict[str, Any], node: Any) -> Any:
    """``node`` with its top-level ``$ref`` chain followed."""
    while isinstance(node, dict) and "$ref" in node:
        node = resolve(document, node["$ref"])
    return node


def operations(document: dict[str, Any], action: str, address: str) -> list[dict[str, Any]]:
    found = []
    for operation in document["operations"].values():
        channel = deref(document, operation["channel"])
        if operation["action"] == action and channel["address"] == address:
            found.append(operation)
    return found


def payload_properties(document: dict[str, Any], operation: dict[str, Any]) -> list[set[str]]:
    """The property names of each message payload of ``operation``."""
    result = []
    for ref in operation["messages"]:
        message = deref(document, ref)
        payload = deref(document, message["payload"])
        result.append(set(payload.get("properties", {})))
    return result


def keys_anywhere(node: Any, key: str) -> int:
    if isinstance(node, dict):
        return (key in node) + sum(keys_anywhere(v, key) for v in node.values())
    if isinstance(node, list):
        return sum(keys_anywhere(v, key) for v in node)
    return 0


def rich_app() -> FastAPI:
    router = StreamRouter()

    @router.subscriber("orders.{region}")
    @router.publisher("orders.shipped")
    async def ship(order: Order, region: str, x_tenant: Annotated[str, Header()]) -> Shipped:
        return Shipped(order_id=order.id, to=order.ship_to)

    @router.subscriber("ticks", broadcast=True)
    async def tick(value: Tick) -> None: ...

    @router.get("/shipments", response_class=EventStream)
    async def shipments() -> AsyncIterator[Shipped]:
        yield Shipped(order_id=1, to=Address(city="c", zip="z"))

    @router.get("/orders.jsonl", response_class=JSONLines)
    async def orders_lines() -> AsyncIterator[Order]:
        yield Order(id=1, ship_to=Address(city="c", zip="z"))

    @router.websocket("/chat", receive=Chat, send=Shipped)
    async def chat(websocket: WebSocket) -> None:
        await websocket.accept()

    app = FastAPI(title="Shop", version="2.1.0")
    app.include_router(router, prefix="/api")
    return app


def test_signature() -> None:
    params = inspect.signature(get_asyncapi).parameters
    assert next(iter(params)) == "app"
    assert all(p.default is not inspect.Parameter.empty for p in list(params.values())[1:])


@pytest.mark.parametrize("app", [FastAPI(), Starlette(), FastAPI(title="T", version="9")])
def test_an_empty_app_gives_a_valid_empty_document(app: Starlette) -> None:
    document = get_asyncapi(app)
    validate_asyncapi(document)
    assert document["asyncapi"] == "3.0.0"
    assert not document.get("channels")
    assert not document.get("operations")
    assert document["info"]["title"] and document["info"]["version"]


def test_info_comes_from_the_app() -> None:
    document = get_asyncapi(FastAPI(title="Shop", version="2.1.0"))
    assert document["info"]["title"] == "Shop"
    assert document["info"]["version"] == "2.1.0"


def test_rich_app_document_is_valid_and_complete() -> None:
    document = get_asyncapi(rich_app())
    validate_asyncapi(document)
    assert document["asyncapi"] == "3.0.0"
    json.dumps(document)

    (receive,) = operations(document, "receive", "orders.{region}")
    assert payload_properties(document, receive) == [{"id", "ship_to"}]
    message = deref(document, receive["messages"][0])
    headers = deref(document, message["headers"])
    assert {name.lower() for name in headers["properties"]} == {"x-tenant"}
    channel = deref(document, receive["channel"])
    assert set(channel["parameters"]) == {"region"}

    (published,) = operations(document, "send", "orders.shipped")
    assert payload_properties(document, published) == [{"order_id", "to"}]

    (ticks,) = operations(document, "receive", "ticks")
    assert payload_properties(document, ticks) == [{"seq"}]

    (sse,) = operations(document, "send", "/api/shipments")
    assert payload_properties(document, sse) == [{"order_id", "to"}]
    (lines,) = operations(document, "send", "/api/orders.jsonl")
    assert payload_properties(document, lines) == [{"id", "ship_to"}]

    (ws_in,) = operations(document, "receive", "/api/chat")
    assert payload_properties(document, ws_in) == [{"text"}]
    (ws_out,) = operations(document, "send", "/api/chat")
    assert payload_properties(document, ws_out) == [{"order_id", "to"}]


def test_shared_models_appear_once_and_nested_refs_resolve() -> None:
    document = get_asyncapi(rich_app())
    schemas = document["components"]["schemas"]
    titled_address = [name for name, schema in schemas.items() if schema.get("title") == "Address"]
    assert len(titled_address) == 1  # Order, Shipped: one Address
    assert len([s for s in schemas.values() if s.get("title") == "Shipped"]) == 1
    assert keys_anywhere(document, "$defs") == 0  # pydantic's local defs are hoisted
    address = deref(document, schemas[titled_address[0]])
    assert set(address["properties"]) == {"city", "zip"}
    for name in ("Order", "Shipped"):
        (schema,) = [s for s in schemas.values() if s.get("title") == name]
        nested = [deref(document, v) for v in schema["properties"].values() if "$ref" in v]
        assert [set(n["properties"]) for n in nested] == [{"city", "zip"}]


def test_two_models_with_one_name_are_both_kept() -> None:
    def make(fields: dict[str, Any]) -> type[BaseModel]:
        return type("Item", (BaseModel,), {"__annotations__": fields, "__module__": "elsewhere"})

    first = make({"a": int})
    second = type("Item", (BaseModel,), {"__annotations__": {"b": str}})
    router = StreamRouter()

    async def one(item: first) -> None:  # type: ignore[valid-type]
        ...

    async def two(item: second) -> None:  # type: ignore[valid-type]
        ...

    router.subscriber("one")(one)
    router.subscriber("two")(two)
    app = FastAPI()
    app.include_router(router)
    document = get_asyncapi(app)
    validate_asyncapi(document)
    (op_one,) = operations(document, "receive", "one")
    (op_two,) = operations(document, "receive", "two")
    assert payload_properties(document, op_one) == [{"a"}]
    assert payload_properties(document, op_two) == [{"b"}]


def test_nested_and_twice_included_routers_are_documented_once() -> None:
    router = StreamRouter()

    @router.subscriber("jobs")
    async def job(order: Order) -> None: ...

    outer = APIRouter()
    outer.include_router(router)
    app = FastAPI()
    app.include_router(outer)
    app.include_router(router, prefix="/again")
    document = get_asyncapi(app)
    validate_asyncapi(document)
    assert len(operations(document, "receive", "jobs")) == 1


def test_served_json_equals_get_asyncapi_and_the_page_links_it() -> None:
    router = StreamRouter(asyncapi_path="/asyncapi")

    @router.subscriber("orders")
    async def take(order: Order) -> None: ...

    app = FastAPI(title="Served")
    app.include_router(router)
    with TestClient(app) as client:
        served = client.get("/asyncapi.json")
        page = client.get("/asyncapi")
    assert served.status_code == 200
    assert served.headers["content-type"].startswith("application/json")
    document = served.json()
    validate_asyncapi(document)
    expected = get_asyncapi(app)
    assert document["channels"] == expected["channels"]
    assert document["operations"] == expected["operations"]
    assert document["components"] == expected["components"]
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "asyncapi.json" in page.text
    paths = app.openapi()["paths"]
    assert "/asyncapi" not in paths and "/asyncapi.json" not in paths


class Item(BaseModel):
    sku: str


def test_body_read_by_a_dependency_and_embedded_bodies_are_documented() -> None:
    def current_item(item: Item) -> Item:
        return item

    router = StreamRouter()

    @router.subscriber("via-dependency")
    async def via_dependency(item: Annotated[Item, Depends(current_item)]) -> None: ...

    @router.subscriber("embedded")
    async def embedded(item: Item, order: Order) -> None: ...

    app = FastAPI()
    app.include_router(router)
    document = get_asyncapi(app)
    validate_asyncapi(document)
    (dep,) = operations(document, "receive", "via-dependency")
    assert payload_properties(document, dep) == [{"sku"}]
    (both,) = operations(document, "receive", "embedded")
    assert payload_properties(document, both) == [{"item", "order"}]
