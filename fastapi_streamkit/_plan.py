"""A handler's dependency graph compiled once (`_solve.py` solves it per message).

`compile_plan` resolves what never depends on the message: the graph, each callable's kind
(sync, coroutine, ``yield``), interned cache keys, the parameter fields, which of them receives
the whole body, and whether a message could ever satisfy it. Dependency overrides are not
handled here: the session falls back to FastAPI's solver when one applies.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any, ForwardRef

from . import _compat
from .exceptions import UsageError

__all__ = ["Kind", "Node", "Plan", "Source", "compile_plan"]


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
