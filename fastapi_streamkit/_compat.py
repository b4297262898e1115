"""The only module that touches FastAPI's private dependency machinery.

Everything `messages.py` needs from `fastapi.dependencies.*` and other underscore names is
imported here, so a FastAPI upgrade breaks (at most) this file. The range of FastAPI versions
this package is tested with is `TESTED_FASTAPI`; importing the package with another version
emits `UnsupportedFastAPIWarning` (it does not refuse to work).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import fastapi
from fastapi import params
from fastapi._compat import ModelField as ModelField
from fastapi._compat import Undefined as Undefined
from fastapi.dependencies.models import Dependant as Dependant
from fastapi.dependencies.models import _get_cache_key, _get_oauth_scopes
from fastapi.dependencies.models import _is_async_gen_callable as is_async_gen_callable
from fastapi.dependencies.models import _is_coroutine_callable as is_coroutine_callable
from fastapi.dependencies.models import _is_gen_callable as is_gen_callable
from fastapi.dependencies.utils import (
    _get_flat_body_params,
    _get_form_models,
    _should_embed_body_fields,
    _solve_generator,
    _validate_value_with_model_field,
    get_dependant,
    get_flat_params,
    get_parameterless_sub_dependant,
)
from fastapi.dependencies.utils import request_body_to_args as request_body_to_args
from fastapi.dependencies.utils import request_params_to_args as request_params_to_args
from fastapi.dependencies.utils import solve_dependencies as solve_dependencies
from fastapi.routing import (
    APIRoute,
    APIRouter,
    APIWebSocketRoute,
    _get_scope_effective_route_context,
    _get_scope_included_router,
    _IncludedRouter,
    _update_scope,
)
from fastapi.routing import get_websocket_app as _get_websocket_app
from fastapi.telemetry._api import _route_selected
from fastapi.utils import create_model_field
from pydantic_core import SchemaValidator
from starlette._exception_handler import wrap_app_handling_exceptions
from starlette.requests import Request
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket

from .exceptions import UnsupportedFastAPIWarning

__all__ = [
    "TESTED_FASTAPI",
    "Dependant",
    "ModelField",
    "Undefined",
    "build_dependant",
    "cache_key",
    "check_fastapi_version",
    "embed_body_fields",
    "is_async_gen_callable",
    "is_coroutine_callable",
    "is_gen_callable",
    "mark_routes_changed",
    "oauth_scopes",
    "python_validator",
    "request_body_to_args",
    "request_params_to_args",
    "single_body_field",
    "solve_dependencies",
    "solve_generator",
    "validate_field",
]

TESTED_FASTAPI: tuple[tuple[int, int], tuple[int, int]] = ((0, 165), (0, 166))
"""FastAPI versions this module is tested with: ``>=0.165,<0.166``."""


def _parse_version(version: str) -> tuple[int, int]:
    match = re.match(r"(\d+)\.(\d+)", version)
    if match is None:
        return (0, 0)
    return (int(match.group(1)), int(match.group(2)))


def check_fastapi_version(version: str | None = None) -> None:
    """Warn (`UnsupportedFastAPIWarning`) when FastAPI is outside `TESTED_FASTAPI`."""
    installed = fastapi.__version__ if version is None else version
    low, high = TESTED_FASTAPI
    if low <= _parse_version(installed) < high:
        return
    warnings.warn(
        f"fastapi_streamkit is tested with fastapi>={low[0]}.{low[1]},<{high[0]}.{high[1]}, "
        f"but fastapi {installed} is installed: message handlers use FastAPI's private "
        "dependency machinery and may misbehave. Install a tested FastAPI version or "
        "upgrade fastapi_streamkit.",
        UnsupportedFastAPIWarning,
        stacklevel=2,
    )


check_fastapi_version()


def build_dependant(
    call: Callable[..., Any],
    *,
    path: str = "",
    dependencies: Sequence[params.Depends] = (),
) -> Dependant:
    """FastAPI's `Dependant` for a handler, as `APIRoute` builds it for an endpoint.

    ``path`` names the path parameters (``"orders.{region}"``); ``dependencies`` are
    parameterless `Depends` run before the handler's own, in order.
    """
    dependant = get_dependant(path=path, call=call, scope="function")
    for depends in reversed(dependencies):
        dependant.dependencies.insert(
            0, get_parameterless_sub_dependant(depends=depends, path=path)
        )
    return dependant


def embed_body_fields(dependant: Dependant) -> bool:
    """Whether the body is an object keyed by parameter (FastAPI's embed rules)."""
    return _should_embed_body_fields(_get_flat_body_params(dependant))


def cache_key(dependant: Dependant) -> tuple[Any, ...]:
    """The key FastAPI caches this dependency's value under, within one request."""
    return _get_cache_key(dependant=dependant)


def oauth_scopes(dependant: Dependant) -> list[str]:
    """The OAuth scopes `SecurityScopes` receives for this dependant."""
    return _get_oauth_scopes(dependant=dependant)


async def solve_generator(
    dependant: Dependant, *, values: dict[str, Any], stack: Any, request: Request
) -> Any:
    """Enter a ``yield`` dependency on ``stack`` exactly as FastAPI does (threads, shielding)."""
    return await _solve_generator(
        dependant=dependant, stack=stack, sub_values=values, request=request
    )


def validate_field(field: ModelField, value: Any, *, loc: tuple[str, ...]) -> tuple[Any, list[Any]]:
    """Validate one parameter value (`Undefined` when absent) as FastAPI does."""
    return _validate_value_with_model_field(field=field, value=value, values={}, loc=loc)


def single_body_field(fields: list[ModelField], *, embed: bool) -> ModelField | None:
    """The field that receives the whole body, when FastAPI would not embed ``fields``."""
    if len(fields) != 1 or embed or _should_embed_body_fields(fields):
        return None
    return None if _get_form_models(fields[0]) else fields[0]


def mark_routes_changed(router: APIRouter) -> None:
    """Tell FastAPI that ``router.routes`` was changed by hand (it caches by routes version)."""
    router._mark_routes_changed()


# --- connections (connection.py): our WebSocket on FastAPI's WebSocket routes -------------
# FastAPI builds every WebSocket connection as a plain Starlette `WebSocket`, and
# `include_router` rebuilds each `APIWebSocketRoute` as a plain one (dropping its class);
# these helpers let `connection.py` run FastAPI's own WebSocket pipeline with our class.


def websocket_session_app(
    dependant: Dependant,
    *,
    websocket_class: type[WebSocket],
    dependency_overrides_provider: Any | None,
    embed_body_fields: bool,
) -> ASGIApp:
    """FastAPI's ``websocket_session(get_websocket_app(...))``, building ``websocket_class``."""
    func = _get_websocket_app(
        dependant=dependant,
        dependency_overrides_provider=dependency_overrides_provider,
        embed_body_fields=embed_body_fields,
    )

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        session = websocket_class(scope, receive=receive, send=send)

        async def run(scope: Scope, receive: Receive, send: Send) -> None:
            async with AsyncExitStack() as request_stack:
                scope["fastapi_inner_astack"] = request_stack
                async with AsyncExitStack() as function_stack:
                    scope["fastapi_function_astack"] = function_stack
                    await func(session)

        await wrap_app_handling_exceptions(run, session)(scope, receive, send)

    return app


@dataclass(frozen=True)
class IncludedWebSocket:
    """A WebSocket route of an included router, matched for one connection."""

    route: BaseRoute
    """The route as registered on the included router (its class is kept)."""
    effective: APIWebSocketRoute
    """FastAPI's rebuild of it: prefixed path, include-level dependencies first."""
    dependency_overrides_provider: Any | None
    child_scope: Scope


def included_websocket(router: APIRouter, scope: Scope) -> IncludedWebSocket | None:
    """The route of ``router`` (reached by ``include_router``) that this WebSocket scope hits."""
    included = _get_scope_included_router(scope)
    if not isinstance(included, _IncludedRouter) or included.original_router is not router:
        return None
    match, child_scope, _, context = included._match(scope)
    if match is not Match.FULL or context is None:
        return None
    if not isinstance(context.starlette_route, APIWebSocketRoute):
        return None
    return IncludedWebSocket(
        route=context.original_route,
        effective=context.starlette_route,
        dependency_overrides_provider=included.include_context.dependency_overrides_provider,
        child_scope=child_scope,
    )


def select_included_websocket(scope: Scope, target: IncludedWebSocket) -> None:
    """Update ``scope`` as FastAPI does when it selects ``target`` (path params, telemetry)."""
    _update_scope(scope, target.child_scope)
    _route_selected(scope=scope, path=target.effective.path_format)


__all__ += [
    "IncludedWebSocket",
    "included_websocket",
    "select_included_websocket",
    "websocket_session_app",
]


def python_validator(field: ModelField) -> Callable[..., Any] | None:
    """The core ``validate_python`` that ``field.validate`` ends in, or None if none."""
    adapter = getattr(field, "_type_adapter", None)
    if adapter is None:
        return None
    validator = adapter.validator  # (re)built here, once, if pydantic deferred it
    if isinstance(validator, SchemaValidator):
        return validator.validate_python
    return None


def effective_route_app(route: APIRoute, scope: Scope) -> tuple[ASGIApp, set[str] | None]:
    """The ASGI app and methods that serve ``route`` for this scope (included routes differ)."""
    context = _get_scope_effective_route_context(scope)
    if context is not None and context.original_route is route:
        assert context.app is not None
        return context.app, context.methods
    return route.app, route.methods


def stream_item_field(route: APIRoute, item: Any) -> ModelField:
    """The model field FastAPI keeps for a streaming route's items (OpenAPI components)."""
    name = "StreamItem_" + route.unique_id
    return create_model_field(name=name, type_=item, mode="serialization")


# --- AsyncAPI (asyncapi.py): the routers an app includes and a handler's flat parameters ----


def included_routers(routes: Sequence[BaseRoute]) -> list[APIRouter]:
    """Every router reached by ``include_router`` from ``routes``, depth first, each once."""
    found: list[APIRouter] = []

    def walk(routes: Sequence[BaseRoute]) -> None:
        for route in routes:
            if isinstance(route, _IncludedRouter):
                router = route.original_router
                if all(seen is not router for seen in found):
                    found.append(router)
                walk(router.routes)

    walk(routes)
    return found


def flat_params(dependant: Dependant) -> list[ModelField]:
    """Path, query, header and cookie parameters of ``dependant`` and its sub-dependencies."""
    return get_flat_params(dependant)


def flat_body_params(dependant: Dependant) -> list[ModelField]:
    """The body parameters of ``dependant`` and its sub-dependencies, in FastAPI's order."""
    return _get_flat_body_params(dependant)


__all__ += ["flat_body_params", "flat_params", "included_routers"]
