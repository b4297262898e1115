"""`StreamMessage` as a Starlette `Request`, and `get_session` as the router uses it."""

import importlib.util
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Annotated, Any

import anyio
import httpx
import pytest
from fastapi import (
    BackgroundTasks,
    Cookie,
    Depends,
    FastAPI,
    Header,
    HTTPException,
    Query,
    Request,
)
from fastapi.exceptions import FastAPIError, RequestValidationError
from pydantic import BaseModel
from starlette.requests import Request as StarletteRequest

from fastapi_streamkit import StreamMessage, _compat
from fastapi_streamkit._dispatch import read_body
from fastapi_streamkit.exceptions import UsageError
from fastapi_streamkit.messages import MessageHeaders

pytestmark = pytest.mark.anyio


class Order(BaseModel):
    id: int
    qty: int = 1


def session_for(handler: Any, *, path: str = "", provider: Any = None) -> Any:
    return StreamMessage.get_session(_compat.build_dependant(handler, path=path), lambda: provider)


# -- StreamMessage: a real Request --------------------------------------------------------


async def test_stream_message_is_a_request_over_a_minimal_http_scope() -> None:
    message = StreamMessage(
        b'{"id": 1}', {"Content-Type": "application/json"}, {"region": "eu"}, topic="orders.eu"
    )
    assert isinstance(message, StarletteRequest)
    assert message.scope["type"] == "http"
    assert message.method == "POST"
    assert message.url.path == "/orders.eu"
    assert str(message.url) == "/orders.eu"
    assert message.path_params == {"region": "eu"}
    assert message.topic == "orders.eu"
    assert len(message.query_params) == 0
    assert message.cookies == {}
    assert message.client is None
    assert await message.body() == b'{"id": 1}'
    assert await message.json() == {"id": 1}
    assert [chunk async for chunk in message.stream()] == [b'{"id": 1}', b""]


async def test_stream_message_sets_what_starlettes_request_init_sets() -> None:
    """StreamMessage inlines Request.__init__; this fails when Starlette's changes."""
    request = StarletteRequest({"type": "http"}, StreamMessage(b"")._receive_body)
    message = StreamMessage(b"x")
    ours = {"_body", "_body_sent"}
    assert set(vars(message)) - ours == set(vars(request))
    assert message._send is request._send
    assert (message._stream_consumed, message._is_disconnected, message._form) == (
        request._stream_consumed,
        request._is_disconnected,
        request._form,
    )


async def test_defaults_make_an_empty_message_at_the_root_path() -> None:
    message = StreamMessage(b"")
    assert message.url.path == "/"
    assert message.topic is None
    assert message.path_params == {}
    assert len(message.headers) == 0
    assert await message.body() == b""


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("héllo", "héllo".encode()),
        (bytearray(b"ab"), b"ab"),
        (memoryview(b"cd"), b"cd"),
        ({"id": 1, "name": "é"}, '{"id":1,"name":"é"}'.encode()),
        ([1, 2], b"[1,2]"),
        (Order(id=2), b'{"id":2,"qty":1}'),
    ],
)
async def test_body_is_bytes_str_as_utf8_or_anything_else_as_json(
    body: Any, expected: bytes
) -> None:
    message = StreamMessage(body)
    assert await message.body() == expected
    assert type(message._body) is bytes


async def test_headers_are_case_insensitive_and_round_trip_any_str() -> None:
    message = StreamMessage(b"", {"X-Trace-ID": "abc", "X-User": "Jürgen 日本"})
    headers = message.headers
    assert isinstance(headers, MessageHeaders)
    assert headers["x-trace-id"] == headers["X-TRACE-ID"] == "abc"
    assert "x-USER" in headers
    assert headers["x-user"] == "Jürgen 日本"
    assert headers.get("missing") is None
    assert headers.getlist("X-User") == ["Jürgen 日本"]
    assert headers.keys() == ["x-trace-id", "x-user"]
    assert headers.values() == ["abc", "Jürgen 日本"]
    assert dict(headers.items()) == {"x-trace-id": "abc", "x-user": "Jürgen 日本"}
    assert message.scope["headers"] == [
        (b"x-trace-id", b"abc"),
        (b"x-user", "Jürgen 日本".encode()),
    ]


async def test_receive_gives_the_body_once_and_is_never_disconnected() -> None:
    message = StreamMessage(b"payload")
    assert await message.receive() == {
        "type": "http.request",
        "body": b"payload",
        "more_body": False,
    }
    assert await message.is_disconnected() is False
    with anyio.move_on_after(0.05) as scope:  # afterwards it waits, like an idle client
        await message.receive()
    assert scope.cancelled_caught


# -- the body ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "headers", "expected"),
    [
        (b"", {}, _compat.Undefined),
        (b'{"a": [1, 2.5, null, true]}', {}, {"a": [1, 2.5, None, True]}),
        (b'{"a": 1}', {"content-type": "application/json; charset=utf-8"}, {"a": 1}),
        (b'{"a": 1}', {"content-type": "application/cloudevents+json"}, {"a": 1}),
        (b'{"a": 1}', {"content-type": "text/plain"}, b'{"a": 1}'),
        (b"\x00\x01", {"content-type": "application/octet-stream"}, b"\x00\x01"),
        (b"123456789012345678901234567890", {}, 123456789012345678901234567890),
        (b"[NaN, Infinity]", {}, [float("nan"), float("inf")]),
        ('\ufeff{"bom": 1}'.encode(), {}, {"bom": 1}),
        ('{"utf16": 1}'.encode("utf-16"), {}, {"utf16": 1}),
        (b'"\\ud800"', {}, "\ud800"),
        (b"[" * 400 + b"]" * 400, {}, None),  # deeper than pydantic's parser goes
    ],
)
async def test_body_decodes_as_json_loads(
    body: bytes, headers: dict[str, str], expected: Any
) -> None:
    decoded = read_body(StreamMessage(body, headers))
    if expected is None:
        assert decoded == json.loads(body)
    else:
        assert repr(decoded) == repr(expected)


async def test_invalid_json_fails_with_fastapis_own_error() -> None:
    app = FastAPI()

    @app.post("/orders")
    async def endpoint(order: Order) -> int:
        return order.id

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        for bad in (b'{"id": 1,', b"{'id': 1}", b"[1] x"):
            response = await client.post(
                "/orders", content=bad, headers={"content-type": "application/json"}
            )
            assert response.status_code == 422
            with pytest.raises(RequestValidationError) as caught:
                await session_for(endpoint)(StreamMessage(bad))
            assert caught.value.errors() == [
                {**error, "loc": tuple(error["loc"])} for error in response.json()["detail"]
            ]


async def test_body_that_is_not_utf8_is_a_validation_error() -> None:
    async def handler(order: Order) -> int:
        return order.id

    with pytest.raises(RequestValidationError) as caught:
        await session_for(handler)(StreamMessage(b'{"id": 1, "x": "\xff"}'))
    [error] = caught.value.errors()
    assert error["type"] == "json_invalid"
    assert error["loc"][0] == "body"


# -- errors --------------------------------------------------------------------------------


async def test_validation_errors_and_handler_errors_are_told_apart() -> None:
    async def handler(order: Order, x_mode: Annotated[str, Header()] = "ok") -> int:
        if x_mode == "http":
            raise HTTPException(status_code=409, detail="conflict")
        if x_mode == "boom":
            raise RuntimeError("boom")
        return order.id

    session = session_for(handler)
    assert await session(StreamMessage(b'{"id": 4}')) == 4
    with pytest.raises(RequestValidationError) as invalid:
        await session(StreamMessage(b'{"qty": 2}', {"X-Mode": "boom"}))
    assert invalid.value.errors() == [
        {"type": "missing", "loc": ("body", "id"), "msg": "Field required", "input": {"qty": 2}}
    ]
    assert invalid.value.body == {"qty": 2}
    with pytest.raises(HTTPException) as http:
        await session(StreamMessage(b'{"id": 4}', {"X-Mode": "http"}))
    assert http.value.status_code == 409
    with pytest.raises(RuntimeError, match="boom"):
        await session(StreamMessage(b'{"id": 4}', {"x-mode": "boom"}))


@pytest.mark.parametrize(
    ("where", "declare"),
    [
        ("query", lambda: Annotated[int, Query()]),
        ("query", lambda: int),
        ("cookie", lambda: Annotated[str, Cookie()]),
    ],
)
async def test_a_parameter_a_message_can_never_give_fails_at_build(
    where: str, declare: Any
) -> None:
    async def dependency(n: declare()) -> None:  # type: ignore[valid-type]
        return None

    async def handler(d: Annotated[None, Depends(dependency)], ok: int = 1) -> None:
        return None

    with pytest.raises(UsageError, match=rf"parameter 'n' is a required {where} parameter"):
        session_for(handler)


async def test_an_unresolvable_annotation_is_named_at_build() -> None:
    async def handler(dep: "Annotated[str, Depends(not_defined_anywhere)]") -> None:  # noqa: F821
        return None

    with pytest.raises(UsageError, match="could not resolve its annotation .*__future__"):
        session_for(handler)


async def test_get_session_needs_a_dependant_with_a_call() -> None:
    with pytest.raises(TypeError, match="build_dependant"):
        StreamMessage.get_session(_compat.Dependant(), lambda: None)


async def test_a_dependency_that_swallows_the_handlers_error_is_reported() -> None:
    async def careless() -> AsyncIterator[None]:
        try:
            yield
        except Exception:
            pass  # never re-raised

    async def handler(_: Annotated[None, Depends(careless)]) -> int:
        raise RuntimeError("lost")

    with pytest.raises(FastAPIError, match="re-raise|Re-raise"):
        await session_for(handler)(StreamMessage(b""))


# -- teardown and background tasks ---------------------------------------------------------


def teardown_handler(log: list[str]) -> Any:
    async def request_scoped() -> AsyncIterator[str]:
        log.append("request open")
        try:
            yield "r"
        except Exception as exc:
            log.append(f"request saw {exc}")
            raise
        finally:
            log.append("request close")

    def function_scoped() -> Iterator[str]:
        log.append("function open")
        yield "f"
        log.append("function close")

    async def handler(
        tasks: BackgroundTasks,
        r: Annotated[str, Depends(request_scoped)],
        f: Annotated[str, Depends(function_scoped, scope="function")],
    ) -> str:
        tasks.add_task(log.append, "background")
        log.append("handler")
        return r + f

    return handler


async def test_call_returns_after_every_teardown() -> None:
    log: list[str] = []
    result = await session_for(teardown_handler(log))(StreamMessage(b""))
    log.append(f"returned {result}")
    assert log == [
        "request open",
        "function open",
        "handler",
        "function close",
        "background",
        "request close",
        "returned rf",
    ]


async def test_open_tears_request_scoped_dependencies_down_after_the_block() -> None:
    log: list[str] = []
    session = session_for(teardown_handler(log))
    async with session.open(StreamMessage(b"")) as result:
        log.append(f"published {result}")
    assert log == [
        "request open",
        "function open",
        "handler",
        "function close",
        "published rf",
        "background",
        "request close",
    ]


async def test_an_error_in_the_block_reaches_the_dependencies_and_skips_background() -> None:
    log: list[str] = []
    session = session_for(teardown_handler(log))
    with pytest.raises(OSError, match="publish failed"):
        async with session.open(StreamMessage(b"")):
            raise OSError("publish failed")
    assert log[-2:] == ["request saw publish failed", "request close"]
    assert "background" not in log


async def test_open_without_yield_dependencies_runs_background_at_block_end() -> None:
    log: list[str] = []

    async def handler(tasks: BackgroundTasks) -> str:
        tasks.add_task(log.append, "background")
        return "done"

    async with session_for(handler).open(StreamMessage(b"")) as result:
        log.append(result)
    assert log == ["done", "background"]


# -- overrides -----------------------------------------------------------------------------


async def real_db() -> str:
    return "real"


async def repo(db: Annotated[str, Depends(real_db)]) -> str:
    return f"repo({db})"


async def overridable(r: Annotated[str, Depends(repo)]) -> str:
    return r


async def test_overrides_are_read_at_call_time_without_a_lifespan() -> None:
    app = FastAPI()
    session = session_for(overridable, provider=app)  # built before any override exists

    def message() -> StreamMessage:
        return StreamMessage(b"")

    assert await session(message()) == "repo(real)"
    app.dependency_overrides[real_db] = lambda: "fake"
    assert await session(message()) == "repo(fake)"
    app.dependency_overrides[repo] = lambda: "stub"
    assert await session(message()) == "stub"
    app.dependency_overrides.clear()
    assert await session(message()) == "repo(real)"


async def test_overrides_apply_through_open_and_yield_overrides_tear_down() -> None:
    app = FastAPI()
    log: list[str] = []

    async def fake_db() -> AsyncIterator[str]:
        yield "fake"
        log.append("fake closed")

    app.dependency_overrides[real_db] = fake_db
    async with session_for(overridable, provider=app).open(StreamMessage(b"")) as result:
        log.append(result)
    assert log == ["repo(fake)", "fake closed"]


async def test_unrelated_overrides_keep_the_plan_and_its_result() -> None:
    app = FastAPI()
    app.dependency_overrides[Order] = lambda: None
    assert await session_for(overridable, provider=app)(StreamMessage(b"")) == "repo(real)"


async def test_the_provider_app_is_the_requests_app() -> None:
    app = FastAPI()
    app.state.greeting = "hi"

    async def handler(request: Request) -> str:
        greeting: str = request.app.state.greeting
        return greeting

    assert await session_for(handler, provider=app)(StreamMessage(b"")) == "hi"


async def test_max_concurrency_is_honoured_across_messages() -> None:
    active: list[int] = []
    peak: list[int] = []

    async def limited() -> None:
        active.append(1)
        peak.append(len(active))
        await anyio.sleep(0.01)
        active.pop()

    async def handler(_: Annotated[None, Depends(limited, max_concurrency=1)]) -> None:
        return None

    session = session_for(handler)
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            for _ in range(4):
                tg.start_soon(session, StreamMessage(b""))
    assert peak == [1, 1, 1, 1]


async def test_path_parameters_come_from_the_topic_pattern() -> None:
    async def handler(region: str, shard: int) -> list[Any]:
        return [region, shard]

    session = session_for(handler, path="orders.{region}.{shard}")
    message = StreamMessage(b"", path={"region": "eu", "shard": "7"}, topic="orders.eu.7")
    assert await session(message) == ["eu", 7]
    with pytest.raises(RequestValidationError) as caught:
        await session(StreamMessage(b"", path={"region": "eu", "shard": "x"}))
    assert [e["loc"] for e in caught.value.errors()] == [("path", "shard")]


# -- docs/examples/messages_di.py ----------------------------------------------------------


async def test_docs_example_messages_di(capsys: pytest.CaptureFixture[str]) -> None:
    path = Path(__file__).resolve().parent.parent / "docs" / "examples" / "messages_di.py"
    spec = importlib.util.spec_from_file_location("messages_di_example", path)
    assert spec is not None and spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    with anyio.fail_after(10):
        await example.main()
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "result: {'sku': 'A-1', 'region': 'eu', 'tenant': 'acme'}"
    assert out[1] == "published to: ['orders.accepted']"
    assert out[2].startswith('dead letter: orders.eu.dlq {"type":"RequestValidationError"')
    assert '"loc":["body","quantity"]' in out[2]
    assert example.app.state.audit == [
        "session opened",
        "saved A-1 x2",
        "session closed",
        "session opened",  # dependencies run even when the body is invalid, as in FastAPI
        "session closed",
        "fake session",
        "saved B-2 x1",
    ]
    assert out[-1].startswith("with override: {'sku': 'B-2', 'region': 'us', 'tenant': 'umbrella'}")
    assert example.app.dependency_overrides == {}
