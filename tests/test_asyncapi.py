"""`get_asyncapi`: what each declaration becomes, validated against the official 3.0.0 schema."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Annotated, Any

import pytest
import yaml
from fastapi import APIRouter, FastAPI, Header, Query
from fastapi.sse import EventSourceResponse
from fastapi.testclient import TestClient
from pydantic import BaseModel, Field, computed_field

from fastapi_streamkit import (
    EventStream,
    JSONLines,
    MemoryBroker,
    MsgPackStream,
    StreamRouter,
    WebSocket,
    get_asyncapi,
)
from fastapi_streamkit.asyncapi import dump_asyncapi
from fastapi_streamkit.exceptions import MissingDependency, UsageError
from tests._asyncapi_schema import resolve, validate_asyncapi

ROOT = Path(__file__).resolve().parents[1]


class Address(BaseModel):
    city: str
    country: str = Field(min_length=2, max_length=2)


class Order(BaseModel):
    id: int
    ship_to: Address


class Customer(BaseModel):
    name: str
    address: Address


class Shipped(BaseModel):
    order_id: int


class Ping(BaseModel):
    seq: int


class Priced(BaseModel):
    net: float

    @computed_field  # type: ignore[prop-decorator]
    @property
    def gross(self) -> float:
        return self.net * 1.2


def rich_app() -> FastAPI:
    """Subscribers (pattern, headers, publisher, broadcast, embedded body, no body), typed
    SSE / JSON Lines / MessagePack routes, FastAPI's own SSE, WebSockets with and without
    models, two routers (one nested, one included twice), shared models throughout."""
    router = StreamRouter()

    @router.subscriber("orders.{region}")
    @router.publisher("orders.shipped")
    async def ship(
        order: Order,
        region: str,
        x_tenant: Annotated[str, Header(description="the shop")],
        x_trace: Annotated[str | None, Header()] = None,
    ) -> Shipped:
        """Ship an order.

        Longer text about shipping.
        """
        return Shipped(order_id=order.id)

    @router.subscriber("orders.shipped", broadcast=True)
    async def audit(shipped: Shipped) -> None:
        pass

    @router.subscriber("customers.merge", group="crm")
    async def merge(customer: Customer, order: Order) -> None:
        pass

    @router.subscriber("raw")
    async def raw() -> None:
        pass

    @router.get("/orders/{region}/events", response_class=EventStream)
    async def order_events(region: str, since: int = 0) -> AsyncIterator[Order]:
        """Orders of a region, as they come."""
        yield Order(id=1, ship_to=Address(city="Lyon", country="FR"))

    @router.get("/orders.jsonl", response_class=JSONLines)
    async def order_lines() -> AsyncIterator[Order]:
        yield Order(id=1, ship_to=Address(city="Lyon", country="FR"))

    @router.get("/pings.msgpack", response_class=MsgPackStream)
    async def pings() -> AsyncIterator[Ping]:
        yield Ping(seq=1)

    @router.websocket("/chat/{room}", receive=Customer, send=Order)
    async def chat(websocket: WebSocket, room: str, token: Annotated[str, Query()]) -> None:
        """Chat about orders."""

    @router.websocket("/raw")
    async def raw_socket(websocket: WebSocket) -> None:
        pass

    nested = StreamRouter(broker=MemoryBroker())

    @nested.subscriber("pings", broadcast=True)
    async def on_ping(ping: Ping) -> None:
        pass

    @nested.websocket("/pings", send=Ping)
    async def ping_socket(websocket: WebSocket) -> None:
        pass

    outer = APIRouter()
    outer.include_router(nested, prefix="/nested")

    plain = APIRouter()

    @plain.get("/fastapi-sse", response_class=EventSourceResponse)
    async def fastapi_sse() -> AsyncIterator[Shipped]:
        yield Shipped(order_id=1)

    @plain.get("/fastapi-jsonl")
    async def fastapi_jsonl() -> AsyncIterator[Shipped]:
        yield Shipped(order_id=1)

    app = FastAPI(title="Rich", version="2.0.0", description="Everything streams.")
    app.include_router(router)
    app.include_router(router, prefix="/v2")  # included twice: its subscribers count once
    app.include_router(outer, prefix="/outer")
    app.include_router(plain)
    return app


@pytest.fixture(scope="module")
def rich() -> dict[str, Any]:
    return get_asyncapi(rich_app())


def channel_by_address(doc: dict[str, Any], address: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = [c for c in doc["channels"].values() if c["address"] == address]
    assert len(found) == 1, f"{address!r} in {[c['address'] for c in doc['channels'].values()]}"
    return found[0]


def messages_of(doc: dict[str, Any], operation: str) -> list[dict[str, Any]]:
    return [resolve(doc, ref["$ref"]) for ref in doc["operations"][operation].get("messages", [])]


def model_of(doc: dict[str, Any], schema: dict[str, Any]) -> str:
    """The component name a payload refers to, after checking the reference resolves."""
    resolve(doc, schema["$ref"])
    return str(schema["$ref"].rsplit("/", 1)[1])


# -- validity -----------------------------------------------------------------------------


def test_rich_app_document_is_valid_asyncapi_3(rich: dict[str, Any]) -> None:
    validate_asyncapi(rich)
    assert rich["asyncapi"] == "3.0.0"
    assert rich["info"] == {
        "title": "Rich",
        "version": "2.0.0",
        "description": "Everything streams.",
    }


def test_empty_app_document_is_valid_and_empty() -> None:
    doc = get_asyncapi(FastAPI())
    validate_asyncapi(doc)
    assert doc["channels"] == {} and doc["operations"] == {}
    assert "servers" not in doc and "components" not in doc


def test_validator_rejects_a_broken_document(rich: dict[str, Any]) -> None:
    """The fixture itself can fail: a wrong action and a dangling reference are caught."""
    broken = json.loads(json.dumps(rich))
    broken["operations"]["ship"]["action"] = "publish"
    with pytest.raises(AssertionError, match="not a valid AsyncAPI"):
        validate_asyncapi(broken)
    dangling = json.loads(json.dumps(rich))
    dangling["operations"]["ship"]["messages"] = [{"$ref": "#/channels/nowhere/messages/x"}]
    with pytest.raises(AssertionError, match="points at nothing"):
        validate_asyncapi(dangling)


def test_every_declared_model_has_a_non_empty_payload(rich: dict[str, Any]) -> None:
    for channel in rich["channels"].values():
        for message in channel.get("messages", {}).values():
            payload = message["payload"]
            target = resolve(rich, payload["$ref"]) if "$ref" in payload else payload
            assert target.get("properties"), (channel["address"], message)


# -- what each declaration becomes ----------------------------------------------------------


def test_subscriber_with_pattern_headers_and_publisher(rich: dict[str, Any]) -> None:
    channel = channel_by_address(rich, "orders.{region}")
    assert channel["parameters"] == {"region": {"description": "One dot-free topic segment."}}
    assert channel["servers"] == [{"$ref": "#/servers/memory"}]
    operation = rich["operations"]["ship"]
    assert operation["action"] == "receive"
    assert operation["summary"] == "Ship an order."
    assert operation["description"] == "Longer text about shipping."
    assert operation["x-streamkit-group"].endswith("rich_app.<locals>.ship")
    assert operation["x-streamkit-broadcast"] is False
    assert operation["x-streamkit-dead-letter-topic"] == "orders.{region}.dlq"
    (message,) = messages_of(rich, "ship")
    assert model_of(rich, message["payload"]) == "Order"
    assert message["headers"] == {
        "type": "object",
        "properties": {
            "x-tenant": {"type": "string", "description": "the shop"},
            "x-trace": {"anyOf": [{"type": "string"}, {"type": "null"}], "default": None},
        },
        "required": ["x-tenant"],
    }
    published = rich["operations"]["ship_publish"]
    assert published["action"] == "send"
    assert resolve(rich, published["channel"]["$ref"])["address"] == "orders.shipped"
    (result,) = messages_of(rich, "ship_publish")
    assert model_of(rich, result["payload"]) == "Shipped"


def test_broadcast_group_embedded_body_and_bodiless_subscribers(rich: dict[str, Any]) -> None:
    audit = rich["operations"]["audit"]
    assert audit["x-streamkit-broadcast"] is True and "x-streamkit-group" not in audit
    # the publisher and the broadcast subscriber share the channel and its one message
    shipped = channel_by_address(rich, "orders.shipped")
    assert list(shipped["messages"]) == ["Shipped"]
    assert rich["operations"]["merge"]["x-streamkit-group"] == "crm"
    (merged,) = messages_of(rich, "merge")
    assert merged["payload"]["type"] == "object"
    assert {k: model_of(rich, v) for k, v in merged["payload"]["properties"].items()} == {
        "customer": "Customer",
        "order": "Order",
    }
    assert merged["payload"]["required"] == ["customer", "order"]
    assert "messages" not in rich["operations"]["raw"]  # nothing declared, nothing invented
    assert "messages" not in channel_by_address(rich, "raw")


@pytest.mark.parametrize(
    ("address", "operation", "content_type", "model", "framing"),
    [
        ("/orders/{region}/events", "order_events", "application/json", "Order", "Server-Sent"),
        ("/v2/orders/{region}/events", "order_events_2", "application/json", "Order", "Server"),
        ("/orders.jsonl", "order_lines", "application/json", "Order", "JSON Lines"),
        ("/pings.msgpack", "pings", "application/vnd.msgpack", "Ping", "MessagePack"),
        ("/fastapi-sse", "fastapi_sse", "application/json", "Shipped", "Server-Sent"),
        ("/fastapi-jsonl", "fastapi_jsonl", "application/json", "Shipped", "JSON Lines"),
    ],
)
def test_streaming_routes(
    rich: dict[str, Any],
    address: str,
    operation: str,
    content_type: str,
    model: str,
    framing: str,
) -> None:
    channel = channel_by_address(rich, address)
    assert channel["servers"] == [{"$ref": "#/servers/http"}]
    assert framing in channel["description"]
    op = rich["operations"][operation]
    assert op["action"] == "send"
    assert resolve(rich, op["channel"]["$ref"]) is channel
    (message,) = messages_of(rich, operation)
    assert message["contentType"] == content_type
    assert model_of(rich, message["payload"]) == model


def test_sse_route_documents_its_query_and_docstring(rich: dict[str, Any]) -> None:
    op = rich["operations"]["order_events"]
    assert op["summary"] == "Orders of a region, as they come."
    assert op["bindings"]["http"] == {
        "method": "GET",
        "bindingVersion": "0.3.0",
        "query": {"type": "object", "properties": {"since": {"type": "integer", "default": 0}}},
    }
    assert channel_by_address(rich, "/orders/{region}/events")["parameters"] == {
        "region": {"description": "One path segment."}
    }


def test_websocket_routes(rich: dict[str, Any]) -> None:
    channel = channel_by_address(rich, "/chat/{room}")
    assert channel["servers"] == [{"$ref": "#/servers/ws"}]
    assert channel["bindings"]["ws"]["query"] == {
        "type": "object",
        "properties": {"token": {"type": "string"}},
        "required": ["token"],
    }
    assert rich["operations"]["chat_receive"]["action"] == "receive"
    assert rich["operations"]["chat_receive"]["summary"] == "Chat about orders."
    (received,) = messages_of(rich, "chat_receive")
    (sent,) = messages_of(rich, "chat_send")
    assert model_of(rich, received["payload"]) == "Customer"
    assert model_of(rich, sent["payload"]) == "Order"
    raw = channel_by_address(rich, "/raw")  # no models: both directions, no invented messages
    assert "messages" not in raw
    assert rich["operations"]["raw_socket_send"]["action"] == "send"
    nested = channel_by_address(rich, "/outer/nested/pings")
    assert nested["servers"] == [{"$ref": "#/servers/ws"}]


def test_nested_router_with_its_own_broker(rich: dict[str, Any]) -> None:
    assert set(rich["servers"]) == {"memory", "memory_2", "http", "ws"}
    assert channel_by_address(rich, "pings")["servers"] == [{"$ref": "#/servers/memory_2"}]
    for server in ("memory", "memory_2"):
        assert rich["servers"][server]["protocol"] == "memory"


def test_router_included_twice_documents_subscribers_once(rich: dict[str, Any]) -> None:
    receivers = [k for k, op in rich["operations"].items() if op.get("x-streamkit-handler")]
    assert len(receivers) == len(set(receivers))
    assert sorted(k for k in rich["operations"] if k.startswith("ship")) == ["ship", "ship_publish"]
    channel_by_address(rich, "/v2/chat/{room}")  # routes: once per include, with the prefix


def test_shared_models_appear_once_in_components(rich: dict[str, Any]) -> None:
    schemas = rich["components"]["schemas"]
    assert sorted(schemas) == ["Address", "Customer", "Order", "Ping", "Shipped"]
    text = json.dumps({k: v for k, v in rich.items() if k != "components"})
    assert '"title": "Order"' not in text  # never inlined outside components
    assert schemas["Order"]["properties"]["ship_to"] == {"$ref": "#/components/schemas/Address"}
    assert schemas["Customer"]["properties"]["address"] == {"$ref": "#/components/schemas/Address"}


def test_input_and_output_variants_of_one_model_are_both_kept() -> None:
    """A model whose received and sent forms differ gets FastAPI's -Input/-Output names."""

    router = StreamRouter()

    @router.subscriber("prices")
    @router.publisher("prices.out")
    async def price(item: Priced) -> Priced:
        return item

    app = FastAPI()
    app.include_router(router)
    doc = get_asyncapi(app)
    validate_asyncapi(doc)
    assert sorted(doc["components"]["schemas"]) == ["Priced-Input", "Priced-Output"]
    assert "gross" in doc["components"]["schemas"]["Priced-Output"]["properties"]


# -- servers and ids ----------------------------------------------------------------------


def test_redis_server_entry_leaves_credentials_out() -> None:
    pytest.importorskip("redis")
    from fastapi_streamkit import RedisBroker

    router = StreamRouter(broker=RedisBroker("redis://user:s3cret@cache.internal:6380/2"))

    @router.subscriber("jobs")
    async def job(ping: Ping) -> None:
        pass

    app = FastAPI()
    app.include_router(router)
    doc = get_asyncapi(app)
    validate_asyncapi(doc)
    assert doc["servers"]["redis"]["host"] == "cache.internal:6380"
    assert doc["servers"]["redis"]["protocol"] == "redis"
    assert doc["servers"]["redis"]["pathname"] == "/2"
    assert "s3cret" not in json.dumps(doc) and "user" not in doc["servers"]["redis"]["host"]


@pytest.mark.parametrize(
    ("base_url", "http", "ws"),
    [
        ("http://localhost:8000", {"host": "localhost:8000", "protocol": "http"}, "ws"),
        ("https://api.example/v1/", {"host": "api.example", "protocol": "https"}, "wss"),
    ],
)
def test_http_servers_follow_the_base_url(base_url: str, http: dict[str, str], ws: str) -> None:
    doc = get_asyncapi(rich_app(), base_url=base_url)
    assert {k: doc["servers"]["http"][k] for k in http} == http
    assert doc["servers"]["ws"]["protocol"] == ws
    if "/v1" in base_url:
        assert doc["servers"]["http"]["pathname"] == "/v1"


def test_colliding_channel_ids_are_suffixed() -> None:
    router = StreamRouter()

    @router.subscriber("orders")
    async def on_orders(ping: Ping) -> None:
        pass

    @router.websocket("/orders", send=Ping)
    async def orders_socket(websocket: WebSocket) -> None:
        pass

    app = FastAPI()
    app.include_router(router)
    doc = get_asyncapi(app)
    validate_asyncapi(doc)
    assert {k: c["address"] for k, c in doc["channels"].items()} == {
        "orders": "orders",
        "orders_2": "/orders",
    }


def test_a_type_without_a_json_schema_is_a_clear_error() -> None:
    router = StreamRouter()

    @router.subscriber("locks")
    @router.publisher("locks.out")
    async def lock(ping: Ping) -> threading.Event:
        return threading.Event()

    app = FastAPI()
    app.include_router(router)
    with pytest.raises(
        UsageError,
        match=r"cannot describe .*Event.*result of .*lock\) as a JSON schema: Unable to generate",
    ):
        get_asyncapi(app)


# -- served routes, dump and command line ----------------------------------------------------


def served_app() -> FastAPI:
    router = StreamRouter(asyncapi_path="/asyncapi")

    @router.subscriber("orders.{region}")
    async def ship(order: Order) -> None:
        pass

    app = FastAPI(title="Served")
    app.include_router(router, prefix="/api")
    return app


def test_served_json_and_page_and_no_double_registration() -> None:
    app = served_app()
    routes_before = [getattr(r, "path", None) for r in app.router.routes]
    documents = []
    for _ in range(2):  # two lifespan cycles
        with TestClient(app) as client:
            response = client.get("/api/asyncapi.json")
            assert response.status_code == 200
            documents.append(response.json())
            page = client.get("/api/asyncapi")
            assert page.headers["content-type"].startswith("text/html")
            assert 'data-source="asyncapi.json"' in page.text
            assert "<script src" not in page.text and "http" not in page.text.split("<body")[1]
    assert [getattr(r, "path", None) for r in app.router.routes] == routes_before
    assert documents[0] == documents[1] == get_asyncapi(app, base_url="http://testserver/")
    assert len(documents[0]["operations"]) == 1
    validate_asyncapi(documents[0])
    paths = app.openapi()["paths"]
    assert not any("asyncapi" in path for path in paths)


@pytest.mark.parametrize("path", ["asyncapi", "/asyncapi/", "/asyncapi.json", ""])
def test_asyncapi_path_must_be_a_clean_path(path: str) -> None:
    with pytest.raises(ValueError, match="asyncapi_path must start with '/'"):
        StreamRouter(asyncapi_path=path)


@pytest.mark.parametrize("as_yaml", [False, True])
def test_dump_round_trips(as_yaml: bool) -> None:
    app = rich_app()
    text = dump_asyncapi(app, yaml=as_yaml)
    assert (yaml.safe_load(text) if as_yaml else json.loads(text)) == get_asyncapi(app)


def test_yaml_without_pyyaml_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "yaml", None)  # as if PyYAML were not installed
    with pytest.raises(MissingDependency, match="pip install pyyaml"):
        dump_asyncapi(FastAPI(), yaml=True)


def test_dump_refuses_what_is_not_an_app() -> None:
    with pytest.raises(UsageError, match="expected a FastAPI"):
        dump_asyncapi(object())


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fastapi_streamkit", "asyncapi", *args],
        cwd=ROOT / "docs" / "examples",
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture(scope="module")
def example_doc() -> Iterator[dict[str, Any]]:
    result = run_cli("asyncapi_app:app")
    assert result.returncode == 0, result.stderr
    yield json.loads(result.stdout)


def test_command_prints_json_and_yaml(example_doc: dict[str, Any]) -> None:
    validate_asyncapi(example_doc)
    result = run_cli("asyncapi_app:app", "--yaml")
    assert result.returncode == 0, result.stderr
    assert yaml.safe_load(result.stdout) == example_doc
    assert result.stdout.startswith("asyncapi: 3.0.0\n")


@pytest.mark.parametrize(
    ("target", "error"),
    [("missing_module:app", "cannot import module"), ("asyncapi_app:nope", "no attribute")],
)
def test_command_errors(target: str, error: str) -> None:
    result = run_cli(target)
    assert result.returncode == 2 and error in result.stderr and result.stdout == ""


def test_hidden_stream_routes_and_plain_starlette_apps() -> None:
    from starlette.applications import Starlette
    from starlette.routing import WebSocketRoute

    router = StreamRouter()

    @router.get("/hidden", response_class=EventStream, include_in_schema=False)
    async def hidden() -> AsyncIterator[Ping]:
        yield Ping(seq=1)

    app = FastAPI()
    app.include_router(router)
    assert get_asyncapi(app)["channels"] == {}

    async def socket(websocket: Any) -> None:
        pass

    starlette_app = Starlette(routes=[WebSocketRoute("/ws/{room}", socket, name="socket")])
    doc = get_asyncapi(starlette_app)
    validate_asyncapi(doc)
    assert doc["info"]["title"] == "Starlette"
    assert channel_by_address(doc, "/ws/{room}")["bindings"] == {
        "ws": {"method": "GET", "bindingVersion": "0.1.0"}
    }
    assert sorted(doc["operations"]) == ["socket_receive", "socket_send"]
