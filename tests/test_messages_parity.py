"""Parity: the compiled plan gives what FastAPI's own solver gives, over a table of handlers.

Every case runs the same handler on the same messages three ways:

- ``plan``: ``session(message)``, no overrides (the compiled plan);
- ``fallback``: ``session(message)`` with an identity override of one dependency, which makes
  the session hand the message to FastAPI's ``solve_dependencies``;
- ``fastapi``: FastAPI's ``solve_dependencies`` driven directly, as FastAPI's request handler
  drives it (request and function exit stacks, then the endpoint call);
- ``http``: the handler as a POST endpoint of a real FastAPI app at ``/<topic pattern>``,
  called over ASGI with the message's body and headers (results and errors compared after
  FastAPI's JSON serialisation).

Each run records the outcome (the result, or the error list of `RequestValidationError`, or
another exception) and an event log (which dependency ran, with what, and when teardown ran).
The three records must be equal. (No ``from __future__ import annotations`` here: FastAPI
would then not resolve the annotations that name the local dependencies.)
"""

import json
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Annotated, Any

import pytest
from fastapi import (
    BackgroundTasks,
    Body,
    Depends,
    FastAPI,
    Header,
    Path,
    Query,
    Request,
    Response,
    Security,
)
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer, SecurityScopes
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from fastapi_streamkit import StreamMessage, _compat
from fastapi_streamkit._dispatch import read_body

pytestmark = pytest.mark.anyio

Log = list[Any]
Msg = tuple[bytes, dict[str, str], dict[str, str]]  # body, headers, path params


class Order(BaseModel):
    id: int
    qty: int = Field(default=1, gt=0)


class Customer(BaseModel):
    name: str


class Tenant(BaseModel):
    x_tenant: str
    x_region: str = "eu"


@dataclass
class Case:
    """A handler graph (built fresh per run, logging into ``log``) and the messages to send."""

    id: str
    build: Callable[[Log], tuple[Callable[..., Any], Callable[..., Any]]]  # handler, a dep
    messages: list[Msg]
    path: str = "orders.{region}"
    dependencies: tuple[Any, ...] = ()


def body_only(log: Log) -> tuple[Callable[..., Any], Callable[..., Any]]:
    async def noop() -> None:
        log.append("noop")

    async def handler(order: Order, _: None = Depends(noop)) -> Any:
        return order.model_dump()

    return handler, noop


def body_and_async_dep(log: Log) -> tuple[Callable[..., Any], Callable[..., Any]]:
    async def db() -> str:
        log.append("db")
        return "conn"

    async def handler(order: Order, conn: Annotated[str, Depends(db)]) -> Any:
        return [order.id, conn]

    return handler, db


def sync_deps_and_handler(log: Log) -> tuple[Callable[..., Any], Callable[..., Any]]:
    def settings() -> dict[str, int]:
        log.append("settings")
        return {"limit": 3}

    def handler(order: Order, cfg: dict[str, int] = Depends(settings)) -> Any:
        return min(order.qty, cfg["limit"])

    return handler, settings


def sub_dependencies(log: Log) -> tuple[Callable[..., Any], Callable[..., Any]]:
    async def base(x_trace: Annotated[str | None, Header()] = None) -> str:
        log.append(("base", x_trace))
        return f"base:{x_trace}"

    def middle(b: str = Depends(base)) -> str:
        log.append(("middle", b))
        return f"middle({b})"

    async def top(m: str = Depends(middle), b: str = Depends(base)) -> str:
        log.append(("top", m, b))
        return f"top({m},{b})"

    async def handler(t: str = Depends(top), m: str = Depends(middle)) -> Any:
        return [t, m]

    return handler, base


def no_cache(log: Log) -> tuple[Callable[..., Any], Callable[..., Any]]:
    counter = iter(range(100))

    async def tick() -> int:
        value = next(counter)
        log.append(("tick", value))
        return value

    async def handler(
        a: int = Depends(tick),
        b: int = Depends(tick),
        c: int = Depends(tick, use_cache=False),
    ) -> Any:
        return [a, b, c]

    return handler, tick


def yield_deps(log: Log) -> tuple[Callable[..., Any], Callable[..., Any]]:
    async def session() -> AsyncIterator[str]:
        log.append("session open")
        try:
            yield "session"
        except ValueError as exc:
            log.append(("session saw", str(exc)))
            raise
        finally:
            log.append("session close")

    def cursor(s: str = Depends(session)) -> Iterator[str]:
        log.append("cursor open")
        yield f"cursor on {s}"
        log.append("cursor close")

    async def scoped() -> AsyncIterator[str]:
        log.append("scoped open")
        yield "scoped"
        log.append("scoped close")

    async def handler(
        order: Order,
        c: str = Depends(cursor),
        f: str = Depends(scoped, scope="function"),
    ) -> Any:
        log.append("handler")
        if order.qty == 13:
            raise ValueError("unlucky")
        return [c, f]

    return handler, session


def security(log: Log) -> tuple[Callable[..., Any], Callable[..., Any]]:
    bearer = HTTPBearer(auto_error=False)
    api_key = APIKeyHeader(name="x-api-key", auto_error=False)

    async def user(
        scopes: SecurityScopes,
        creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> Any:
        log.append(("user", scopes.scopes, scopes.scope_str))
        return creds.credentials if creds else None

    async def handler(
        u: Annotated[Any, Security(user, scopes=["orders:read"])],
        admin: Annotated[Any, Security(user, scopes=["admin"])],
        key: Annotated[str | None, Depends(api_key)],
    ) -> Any:
        return [u, admin, key]

    return handler, user


def limited_concurrency(log: Log) -> tuple[Callable[..., Any], Callable[..., Any]]:
    def sync_limited() -> str:
        log.append("sync limited")
        return "s"

    async def async_limited(s: Annotated[str, Depends(sync_limited, max_concurrency=1)]) -> str:
        log.append("async limited")
        return s + "a"

    async def yield_limited() -> AsyncIterator[str]:
        log.append("yield limited open")
        yield "y"
        log.append("yield limited close")

    async def handler(
        a: Annotated[str, Depends(async_limited, max_concurrency=2)],
        y: Annotated[str, Depends(yield_limited, max_concurrency=1)],
    ) -> Any:
        return a + y

    return handler, async_limited


def security_required(log: Log) -> tuple[Callable[..., Any], Callable[..., Any]]:
    bearer = HTTPBearer()

    async def token(creds: Annotated[HTTPAuthorizationCredentials, Security(bearer)]) -> str:
        log.append(("token", creds.scheme))
        return creds.credentials

    async def handler(t: Annotated[str, Depends(token)]) -> Any:
        return t

    return handler, token


def headers_and_path(log: Log) -> tuple[Callable[..., Any], Callable[..., Any]]:
    async def tenant(t: Annotated[Tenant, Header()]) -> str:
        log.append(("tenant", t.x_tenant, t.x_region))
        return t.x_tenant

    async def handler(
        region: Annotated[str, Path(min_length=2)],
        x_request_id: Annotated[str, Header()],
        x_tag: Annotated[list[str], Header()] = [],  # noqa: B006 (FastAPI copies defaults)
        user_agent: Annotated[str, Header(convert_underscores=False)] = "none",
        t: str = Depends(tenant),
    ) -> Any:
        return [region, x_request_id, x_tag, user_agent, t]

    return handler, tenant


def int_path(log: Log) -> tuple[Callable[..., Any], Callable[..., Any]]:
    def shard(shard: int) -> int:
        log.append(("shard", shard))
        return shard * 2

    async def handler(shard: int, doubled: int = Depends(shard)) -> Any:
        return [shard, doubled]

    return handler, shard


def embedded_bodies(log: Log) -> tuple[Callable[..., Any], Callable[..., Any]]:
    def note(note: Annotated[str, Body()] = "-") -> str:
        log.append(("note", note))
        return note

    async def handler(order: Order, customer: Customer, n: str = Depends(note)) -> Any:
        return [order.id, customer.name, n]

    return handler, note


def embed_one(log: Log) -> tuple[Callable[..., Any], Callable[..., Any]]:
    async def noop() -> None:
        log.append("noop")

    async def handler(order: Annotated[Order, Body(embed=True)], _: None = Depends(noop)) -> Any:
        return order.id

    return handler, noop


def errors_everywhere(log: Log) -> tuple[Callable[..., Any], Callable[..., Any]]:
    async def needs_header(x_key: Annotated[int, Header()]) -> int:
        log.append(("needs_header", x_key))
        return x_key

    async def sibling() -> str:
        log.append("sibling runs despite errors")
        return "s"

    async def handler(
        order: Order,
        k: int = Depends(needs_header),
        s: str = Depends(sibling),
        page: Annotated[int, Query()] = 1,
        limit: int = Query(default=10, ge=1),
    ) -> Any:
        return [order.id, k, s, page, limit]

    return handler, sibling


def optional_body_and_query(log: Log) -> tuple[Callable[..., Any], Callable[..., Any]]:
    async def noop() -> None:
        log.append("noop")

    async def handler(order: Order | None = None, page: int = 1, _: None = Depends(noop)) -> Any:
        return [order.id if order else None, page]

    return handler, noop


def injected_objects(log: Log) -> tuple[Callable[..., Any], Callable[..., Any]]:
    def remember(request: Request, response: Response, tasks: BackgroundTasks) -> str:
        response.headers["x-seen"] = "1"
        tasks.add_task(log.append, "background task")
        log.append(("remember", request.method, request.url.path, request.headers.get("x-a")))
        return "r"

    async def handler(
        request: Request, response: Response, tasks: BackgroundTasks, r: str = Depends(remember)
    ) -> Any:
        tasks.add_task(log.append, "handler task")
        return [r, request.path_params, dict(response.headers)]

    return handler, remember


def classes_as_dependencies(log: Log) -> tuple[Callable[..., Any], Callable[..., Any]]:
    class Paging:
        def __init__(self, page: int = 1, size: int = 10) -> None:
            log.append(("paging", page, size))
            self.page, self.size = page, size

    class Checker:
        async def __call__(self, x_role: Annotated[str, Header()] = "guest") -> str:
            log.append(("checker", x_role))
            return x_role

    checker = Checker()

    async def handler(
        paging: Annotated[Paging, Depends()], role: Annotated[str, Depends(checker)]
    ) -> Any:
        return [paging.page, paging.size, role]

    return handler, checker


def raw_bytes_body(log: Log) -> tuple[Callable[..., Any], Callable[..., Any]]:
    async def noop() -> None:
        log.append("noop")

    async def handler(data: Annotated[bytes, Body()], _: None = Depends(noop)) -> Any:
        return data.decode()

    return handler, noop


def parameterless(log: Log) -> tuple[Callable[..., Any], Callable[..., Any]]:
    async def handler(order: Order) -> Any:
        log.append("handler")
        return order.id

    return handler, audit_dependency(log)


def audit_dependency(log: Log) -> Callable[..., Any]:
    async def audit(x_user: Annotated[str, Header()] = "anon") -> None:
        log.append(("audit", x_user))

    return audit


ORDER = b'{"id": 7, "qty": 2}'
JSON = {"content-type": "application/json"}
EU = {"region": "eu"}

CASES = [
    Case("body_only", body_only, [(ORDER, {}, EU), (b'{"id": "x"}', {}, EU), (b"", {}, EU)]),
    Case(
        "body_and_async_dep",
        body_and_async_dep,
        [(ORDER, JSON, EU), (b'{"id": 1, "qty": 0}', JSON, EU), (b"[1, 2]", {}, EU)],
    ),
    Case("sync_deps_and_handler", sync_deps_and_handler, [(ORDER, {}, EU), (b"{}", {}, EU)]),
    Case(
        "sub_dependencies",
        sub_dependencies,
        [(b"", {}, EU), (b"", {"X-Trace": "abc"}, EU)],
    ),
    Case("no_cache", no_cache, [(b"", {}, EU)]),
    Case(
        "yield_deps",
        yield_deps,
        [(ORDER, {}, EU), (b'{"id": 1, "qty": 13}', {}, EU), (b'{"id": "?"}', {}, EU)],
    ),
    Case(
        "security",
        security,
        [
            (b"", {}, EU),
            (b"", {"Authorization": "Bearer tok", "X-API-Key": "k1"}, EU),
            (b"", {"authorization": "Basic xyz"}, EU),
        ],
    ),
    Case("limited_concurrency", limited_concurrency, [(b"", {}, EU)]),
    Case(
        "security_required",
        security_required,
        [
            (b"", {}, EU),
            (b"", {"AUTHORIZATION": "bearer t0"}, EU),
            (b"", {"authorization": "x"}, EU),
        ],
    ),
    Case(
        "headers_and_path",
        headers_and_path,
        [
            (b"", {"X-Request-ID": "r1", "X-Tenant": "acme"}, EU),
            (b"", {"x-request-id": "r2", "x-tenant": "acme", "x-region": "us"}, {"region": "u"}),
            (b"", {"X-Tag": "a", "user_agent": "bot", "X-TENANT": "t"}, EU),
        ],
    ),
    Case(
        "int_path",
        int_path,
        [(b"", {}, {"shard": "3"}), (b"", {}, {"shard": "three"})],
        path="orders.{shard}",
    ),
    Case(
        "embedded_bodies",
        embedded_bodies,
        [
            (b'{"order": {"id": 1}, "customer": {"name": "ann"}, "note": "hi"}', {}, EU),
            (b'{"order": {"id": 1}}', {}, EU),
            (b"[]", {}, EU),
            (b'"text"', {}, EU),
        ],
    ),
    Case("embed_one", embed_one, [(b'{"order": {"id": 5}}', {}, EU), (ORDER, {}, EU)]),
    Case(
        "errors_everywhere",
        errors_everywhere,
        [(b'{"id": "no"}', {"x-key": "nan"}, EU), (ORDER, {"x-key": "4"}, EU)],
    ),
    Case(
        "optional_body_and_query",
        optional_body_and_query,
        [(b"", {}, EU), (ORDER, {}, EU), (b"null", {}, EU)],
    ),
    Case("injected_objects", injected_objects, [(b"", {"X-A": "b"}, EU)]),
    Case(
        "classes_as_dependencies",
        classes_as_dependencies,
        [(b"", {}, EU), (b"", {"X-Role": "admin"}, EU)],
    ),
    Case(
        "raw_bytes_body",
        raw_bytes_body,
        [
            (b"plain text", {"Content-Type": "text/plain"}, EU),
            (b'"json text"', {"content-type": "application/vnd.api+json"}, EU),
        ],
    ),
    Case(
        "parameterless",
        parameterless,
        [(ORDER, {"x-user": "u1"}, EU), (b"{", {}, EU)],
        dependencies=(True,),
    ),
]


def make_message(msg: Msg, case: Case) -> StreamMessage:
    body, headers, path = msg
    return StreamMessage(body, headers, path, topic=case.path.format(**path))


def outcome_of(exc: BaseException) -> Any:
    if isinstance(exc, RequestValidationError):
        return ("invalid", list(exc.errors()))
    return ("raised", type(exc).__name__, str(exc))


class Provider:
    """An app-like object with `dependency_overrides`."""

    def __init__(self, overrides: dict[Any, Any]) -> None:
        self.dependency_overrides = overrides


def build(case: Case, log: Log) -> tuple[_compat.Dependant, Callable[..., Any]]:
    handler, dep = case.build(log)
    extra = [Depends(dep)] if case.dependencies else []
    return _compat.build_dependant(handler, path=case.path, dependencies=extra), dep


async def run_session(case: Case, *, fallback: bool) -> list[Any]:
    log: Log = []
    dependant, dep = build(case, log)
    provider = Provider({dep: dep} if fallback else {})
    session = StreamMessage.get_session(dependant, lambda: provider)
    for msg in case.messages:
        try:
            log.append(("ok", await session(make_message(msg, case))))
        except Exception as exc:
            log.append(outcome_of(exc))
    return log


async def run_fastapi(case: Case) -> list[Any]:
    """FastAPI's solver driven as `fastapi.routing.get_request_handler` drives it."""
    log: Log = []
    dependant, _ = build(case, log)
    embed = _compat.embed_body_fields(dependant)
    assert dependant.call is not None
    for msg in case.messages:
        message = make_message(msg, case)
        try:
            body = read_body(message)
            async with AsyncExitStack() as request_stack:
                message.scope["fastapi_inner_astack"] = request_stack
                async with AsyncExitStack() as function_stack:
                    message.scope["fastapi_function_astack"] = function_stack
                    solved = await _compat.solve_dependencies(
                        request=message,
                        dependant=dependant,
                        body=body,
                        async_exit_stack=request_stack,
                        embed_body_fields=embed,
                    )
                    if solved.errors:
                        raise RequestValidationError(solved.errors, body=body)
                    if _compat.is_coroutine_callable(dependant.call):
                        result = await dependant.call(**solved.values)
                    else:
                        result = await run_in_threadpool(dependant.call, **solved.values)
                if solved.background_tasks is not None:
                    await solved.background_tasks()
            log.append(("ok", result))
        except Exception as exc:
            log.append(outcome_of(exc))
    return log


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
async def test_plan_matches_fastapi_solver(case: Case) -> None:
    expected = await run_fastapi(case)
    assert await run_session(case, fallback=False) == expected


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
async def test_override_fallback_matches_fastapi_solver(case: Case) -> None:
    expected = await run_fastapi(case)
    assert await run_session(case, fallback=True) == expected


async def test_every_case_exercises_something() -> None:
    """Guard against a table whose runs all fail the same trivial way."""
    for case in CASES:
        log = await run_fastapi(case)
        outcomes = [entry[0] for entry in log if isinstance(entry, tuple)]
        assert "ok" in outcomes or "invalid" in outcomes, (case.id, log)


def asgi_channel(body: bytes) -> tuple[Any, Any, list[dict[str, Any]]]:
    """``receive`` giving ``body`` once, ``send`` recording into the returned list."""
    sent: list[dict[str, Any]] = []
    chunks = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> dict[str, Any]:
        return chunks.pop(0) if chunks else {"type": "http.disconnect"}

    async def send(event: dict[str, Any]) -> None:
        sent.append(event)

    return receive, send, sent


async def run_http(case: Case) -> list[Any]:
    """The handler as a POST endpoint of a real FastAPI app, called over ASGI per message."""
    log: Log = []
    handler, dep = case.build(log)
    app = FastAPI()
    app.post("/" + case.path, dependencies=[Depends(dep)] if case.dependencies else None)(handler)
    for msg in case.messages:
        body, headers, _ = msg
        scope = dict(make_message(msg, case).scope)
        if body and not any(name == b"content-type" for name, _ in scope["headers"]):
            # Our documented rule: a message without content-type is JSON.
            scope["headers"] = [*scope["headers"], (b"content-type", b"application/json")]
        receive, send, sent = asgi_channel(body)
        try:
            await app(scope, receive, send)
        except Exception as exc:
            log.append(outcome_of(exc))
            continue
        status = sent[0]["status"]
        payload = json.loads(b"".join(e.get("body", b"") for e in sent[1:]))
        if status == 200:
            log.append(("ok", payload))
        elif status == 422:
            log.append(("invalid", payload["detail"]))
        else:
            log.append(("http", status, payload))
    return log


def as_http(entry: Any) -> Any:
    """What a logged outcome of ours looks like after FastAPI serialised it to JSON."""
    if isinstance(entry, tuple) and entry and entry[0] in ("ok", "invalid"):
        return (entry[0], json.loads(json.dumps(jsonable_encoder(entry[1]))))
    if isinstance(entry, tuple) and entry[:2] == ("raised", "HTTPException"):
        status, _, detail = entry[2].partition(": ")
        return ("http", int(status), {"detail": detail})
    return entry


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
async def test_plan_matches_a_real_fastapi_endpoint(case: Case) -> None:
    ours = [as_http(entry) for entry in await run_session(case, fallback=False)]
    assert ours == await run_http(case)
