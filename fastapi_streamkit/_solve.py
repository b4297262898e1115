"""Solve a compiled plan for one message, in the order and with the results of FastAPI's solver.

Sub-dependencies first, depth first; a sub-dependency whose own parameters failed is skipped
(its siblings still run); then path, query, header, cookie and body values; validation errors
accumulate and are never raised here. Validation and ``yield`` dependencies go through
FastAPI's own functions (`_compat`). `tests/test_messages_parity.py` holds this to FastAPI.
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import Any

from fastapi.background import BackgroundTasks
from fastapi.security import SecurityScopes
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from . import _compat
from ._plan import Kind, Node, Source

__all__ = ["Context", "solve"]

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
