"""A handler's dependency graph compiled once, then solved per message like FastAPI's solver.

`compile_plan` resolves what never depends on the message: the graph, each callable's kind
(sync, coroutine, ``yield``), cache keys, the parameter fields and which of them receives the
whole body. `solve` walks it in FastAPI's order (sub-dependencies first, depth first; a
sub-dependency with errors is skipped, its siblings still run; then path, query, header, cookie
and body values; errors accumulated, never raised) and reuses FastAPI's own functions for
validation and ``yield`` dependencies. Dependency overrides are not handled here: the session
falls back to FastAPI's solver when one applies. `tests/test_messages_parity.py` holds both
to the same results.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass
from enum import Enum
from typing import Any, ForwardRef

from fastapi.background import BackgroundTasks
from fastapi.security import SecurityScopes
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from . import _compat
from .exceptions import UsageError

__all__ = ["Context", "Node", "Plan", "compile_plan", "solve"]


class Kind(Enum):
    """How a dependency is called."""

    SYNC = "sync"  # in the thread pool
    ASYNC = "async"  # awaited
    GENERATOR = "generator"  # entered on an exit stack (sync or async ``yield``)


class Source(Enum):
    """Where a parameter's value comes from, in the order FastAPI reads them."""

    PATH = "path"
    QUERY = "query"
    HEADER = "header"
    COOKIE = "cookie"


@dataclass(frozen=True, slots=True)
class Node:
    """One dependant with everything that does not depend on the message."""

    dependant: _compat.Dependant
    call: Callable[..., Any]
    name: str | None
    kind: Kind
    cache_key: int  # FastAPI's cache key, interned: equal keys get the same int
    use_cache: bool
    function_scope: bool
    concurrency: Any
    children: tuple[Node, ...]
    params: tuple[tuple[Source, list[_compat.ModelField]], ...]
    body_fields: list[_compat.ModelField]
    single_body: _compat.ModelField | None
    validate_body: Callable[..., Any] | None  # the single body field's validate_python
    specials: tuple[tuple[str, str], ...]  # (kind of injected object, parameter name)
    scopes: tuple[str, ...]
    simple: bool  # no parameters at all: called with no arguments


@dataclass(frozen=True, slots=True)
class Plan:
    """A compiled handler: its root node and what the session needs per message."""

    root: Node
    call: Callable[..., Any]
    is_coroutine: bool
    calls: tuple[Callable[..., Any], ...]
    has_body: bool
    has_generators: bool
    embed_body_fields: bool

    def overridden(self, overrides: Mapping[Any, Any]) -> bool:
        """Whether ``overrides`` replace a dependency of this graph (then FastAPI solves)."""
        return any(call in overrides for call in self.calls)


def _kind(call: Callable[..., Any]) -> Kind:
    if _compat.is_gen_callable(call) or _compat.is_async_gen_callable(call):
        return Kind.GENERATOR
    return Kind.ASYNC if _compat.is_coroutine_callable(call) else Kind.SYNC


def _specials(dependant: _compat.Dependant) -> tuple[tuple[str, str], ...]:
    names = (
        ("connection", dependant.http_connection_param_name),
        ("request", dependant.request_param_name),
        ("background", dependant.background_tasks_param_name),
        ("response", dependant.response_param_name),
        ("scopes", dependant.security_scopes_param_name),
    )
    return tuple((what, name) for what, name in names if name)


def _node(dependant: _compat.Dependant, embed: bool, keys: dict[Any, int]) -> Node:
    assert dependant.call is not None
    params = tuple(
        (source, fields)
        for source, fields in (
            (Source.PATH, dependant.path_params),
            (Source.QUERY, dependant.query_params),
            (Source.HEADER, dependant.header_params),
            (Source.COOKIE, dependant.cookie_params),
        )
        if fields
    )
    children = tuple(_node(sub, embed, keys) for sub in dependant.dependencies)
    specials = _specials(dependant)
    body = dependant.body_params
    single_body = _compat.single_body_field(body, embed=embed) if body else None
    return Node(
        dependant=dependant,
        call=dependant.call,
        name=dependant.name,
        kind=_kind(dependant.call),
        cache_key=keys.setdefault(_compat.cache_key(dependant), len(keys)),
        use_cache=dependant.use_cache,
        function_scope=dependant.scope == "function",
        concurrency=dependant.concurrency,
        children=children,
        params=params,
        body_fields=body,
        single_body=single_body,
        validate_body=_compat.python_validator(single_body) if single_body else None,
        specials=specials,
        scopes=tuple(_compat.oauth_scopes(dependant)),
        simple=not (children or params or body or specials),
    )


def _walk(node: Node) -> list[Node]:
    nodes = [node]
    for child in node.children:
        nodes.extend(_walk(child))
    return nodes


def _check_satisfiable(nodes: list[Node]) -> None:
    """A message has no query string and no cookies: a required one could never be given."""
    for node in nodes:
        for source, fields in node.params:
            if source is Source.PATH or source is Source.HEADER:
                continue
            for field in fields:
                if field.field_info.is_required():
                    name = getattr(node.call, "__qualname__", repr(node.call))
                    if isinstance(field.field_info.annotation, ForwardRef):
                        raise UsageError(
                            f"{name}() parameter {field.name!r}: FastAPI could not resolve its "
                            f"annotation {field.field_info.annotation.__forward_arg__!r}, so it "
                            "took it for a query parameter. A name local to a function cannot "
                            "be resolved under `from __future__ import annotations`: define "
                            "it at module level or drop that import."
                        )
                    raise UsageError(
                        f"{name}() parameter {field.name!r} is a required {source.value} "
                        "parameter (FastAPI reads a scalar that is not in the path from the "
                        f"{source.value}), but a message has no {source.value}, so it could "
                        "never be given. Read it from the body with "
                        f"`{field.name}: Annotated[..., Body()]`, from a header with Header(), "
                        f"put {{{field.name}}} in the topic pattern, or give it a default."
                    )


def compile_plan(dependant: _compat.Dependant, *, embed_body_fields: bool) -> Plan:
    """Compile a handler's `Dependant` once; `UsageError` if it could never be satisfied."""
    root = _node(dependant, embed_body_fields, {})
    nodes = _walk(root)
    _check_satisfiable(nodes)
    return Plan(
        root=root,
        call=root.call,
        is_coroutine=_compat.is_coroutine_callable(root.call),
        calls=tuple(node.call for node in nodes[1:]),
        has_body=any(node.body_fields for node in nodes),
        has_generators=any(node.kind is Kind.GENERATOR for node in nodes[1:]),
        embed_body_fields=embed_body_fields,
    )


_NO_VALUES: dict[str, Any] = {}  # never mutated: passed as ``**`` to parameterless calls


class Context:
    """Per-message state shared by the whole graph, as FastAPI's solver threads it.

    ``errors`` is shared too: a node's errors are appended in the order FastAPI's solver
    concatenates them (sub-dependencies first, then the node's own parameters).
    """

    __slots__ = ("background", "body", "cache", "embed", "errors", "message", "response")

    def __init__(self, message: Request, body: Any, embed: bool) -> None:
        self.message = message
        self.body = body
        self.embed = embed
        self.cache: dict[int, Any] = {}
        self.errors: list[Any] = []
        self.background: BackgroundTasks | None = None
        self.response: Response | None = None


async def solve(node: Node, ctx: Context) -> dict[str, Any]:
    """The arguments of ``node.call`` for this message; validation errors go to ``ctx.errors``."""
    values: dict[str, Any] = {}
    errors = ctx.errors
    cache = ctx.cache
    for sub in node.children:
        sub_values = _NO_VALUES
        if not sub.simple:
            seen = len(errors)
            sub_values = await solve(sub, ctx)
            if len(errors) > seen:  # FastAPI skips a dependency whose parameters failed
                continue
        key = sub.cache_key
        if sub.use_cache and key in cache:
            solved = cache[key]
        elif sub.kind is Kind.ASYNC and sub.concurrency is None:
            solved = await sub.call(**sub_values)
        else:
            solved = await _call(sub, sub_values, ctx)
        if sub.name is not None:
            values[sub.name] = solved
        if key not in cache:
            cache[key] = solved
    if node.params:
        _read_params(node, ctx.message, values, errors)
    if node.single_body is not None:
        body = ctx.body
        if body is not _compat.Undefined and node.validate_body is not None:
            try:  # what FastAPI's ModelField.validate does; it reports the errors below
                values[node.single_body.name] = node.validate_body(body, from_attributes=True)
            except ValidationError:
                _read_single_body(node.single_body, body, values, errors)
        else:
            _read_single_body(node.single_body, body, values, errors)
    elif node.body_fields:
        found, failed = await _compat.request_body_to_args(node.body_fields, ctx.body, ctx.embed)
        values.update(found)
        errors.extend(failed)
    if node.specials:
        _inject(node, ctx, values)
    return values


async def _call(node: Node, values: dict[str, Any], ctx: Context) -> Any:
    if node.kind is Kind.GENERATOR:
        scope = ctx.message.scope
        stack: AsyncExitStack = scope[
            "fastapi_function_astack" if node.function_scope else "fastapi_inner_astack"
        ]
        return await _compat.solve_generator(
            node.dependant, values=values, stack=stack, request=ctx.message
        )
    if node.concurrency is not None:
        async with node.concurrency.get_semaphore():
            return await _call_plain(node, values)
    return await _call_plain(node, values)


async def _call_plain(node: Node, values: dict[str, Any]) -> Any:
    if node.kind is Kind.ASYNC:
        return await node.call(**values)
    return await run_in_threadpool(node.call, **values)


def _read_params(node: Node, message: Request, values: dict[str, Any], errors: list[Any]) -> None:
    for source, fields in node.params:
        received: Any
        if source is Source.PATH:
            received = message.path_params
        elif source is Source.HEADER:
            received = message.headers
        elif source is Source.QUERY:
            received = message.query_params
        else:
            received = message.cookies
        found, failed = _compat.request_params_to_args(fields, received)
        values.update(found)
        errors.extend(failed)


def _read_single_body(
    field: _compat.ModelField, body: Any, values: dict[str, Any], errors: list[Any]
) -> None:
    value, failed = _compat.validate_field(field, body, loc=("body",))
    values[field.name] = value
    errors.extend(failed)


def _inject(node: Node, ctx: Context, values: dict[str, Any]) -> None:
    for what, name in node.specials:
        if what == "connection" or what == "request":
            values[name] = ctx.message
        elif what == "background":
            if ctx.background is None:
                ctx.background = BackgroundTasks()
            values[name] = ctx.background
        elif what == "response":
            values[name] = _response(ctx)
        else:
            values[name] = SecurityScopes(scopes=list(node.scopes))


def _response(ctx: Context) -> Response:
    if ctx.response is None:
        response = Response()
        del response.headers["content-length"]
        response.status_code = None  # type: ignore[assignment]
        ctx.response = response
    return ctx.response
