"""AsyncAPI 3.0.0 documents of everything an app streams, read from what the app declares.

- a `StreamRouter` subscriber: a ``receive`` operation on its topic (payload from the body
  parameter, headers from ``Header()`` parameters, ``{name}`` topic parameters);
- a ``@publisher``: a ``send`` operation (payload from the handler's return annotation);
- an `EventStream`, `JSONLines` or `MsgPackStream` route (and FastAPI's own SSE and JSON Lines
  routes): a ``send`` operation on its path, payload from ``-> AsyncIterator[Model]``;
- a WebSocket route: ``receive`` and ``send`` operations (``receive=``/``send=`` models);
- one server per broker in use, plus ``http``/``ws`` servers when such routes exist.

`StreamRouter(asyncapi_path="/asyncapi")` serves the document at ``/asyncapi.json`` and a
page at ``/asyncapi`` (`add_asyncapi_routes`), built from the app at request time.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from fastapi.routing import APIRouter, iter_route_contexts
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse
from starlette.routing import WebSocketRoute

from . import _compat
from ._asyncapi_build import Builder
from ._asyncapi_page import render_page
from .exceptions import MissingDependency, UsageError

if TYPE_CHECKING:
    from .router import StreamRouter

__all__ = ["add_asyncapi_routes", "dump_asyncapi", "get_asyncapi"]


def get_asyncapi(app: Starlette, *, base_url: str = "http://localhost:8000") -> dict[str, Any]:
    """The AsyncAPI 3.0.0 document of ``app``'s subscribers, publishers, streams and sockets.

    ``base_url`` is where the app is served: the host of its ``http``/``ws`` servers.
    """
    builder = Builder(app, base_url)
    for router in _stream_routers(app):
        builder.add_router(router)
    for context in iter_route_contexts(app.routes):
        if isinstance(context.original_route, WebSocketRoute):
            builder.add_websocket(context)
        else:
            builder.add_stream_route(context)
    return builder.document.render()


def dump_asyncapi(app: object, *, yaml: bool = False) -> str:
    """`get_asyncapi` of ``app`` as indented JSON text, or as YAML (needs PyYAML)."""
    if not isinstance(app, Starlette):
        raise UsageError(
            f"expected a FastAPI (or Starlette) application, got {type(app).__name__}: the "
            "AsyncAPI document is read from the app's routes and included routers"
        )
    document = get_asyncapi(app)
    if not yaml:
        return json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    try:
        import yaml as pyyaml
    except ImportError as exc:
        raise MissingDependency(
            "YAML output needs PyYAML, which is not installed: `pip install pyyaml`, or print "
            "JSON (leave out --yaml)"
        ) from exc
    text: str = pyyaml.safe_dump(document, sort_keys=False, allow_unicode=True)
    return text


def add_asyncapi_routes(router: APIRouter, path: str) -> None:
    """Serve the app's document at ``<path>.json`` and a readable page at ``path``.

    Both are built from ``request.app`` on each request and kept out of OpenAPI.
    """
    if not path.startswith("/") or path.endswith("/") or path.endswith(".json"):
        raise ValueError(
            f"asyncapi_path must start with '/' and end without '/' or '.json', got {path!r};"
            " for example '/asyncapi' (the JSON is then served at '/asyncapi.json')"
        )
    json_name = path.rsplit("/", 1)[-1] + ".json"  # relative: works under any prefix

    async def asyncapi_json(request: Request) -> JSONResponse:
        return JSONResponse(get_asyncapi(request.app, base_url=str(request.base_url)))

    async def asyncapi_page(request: Request) -> HTMLResponse:
        title = getattr(request.app, "title", None) or "AsyncAPI"
        return HTMLResponse(render_page(title=str(title), json_url=json_name))

    for suffix, endpoint in ((".json", asyncapi_json), ("", asyncapi_page)):
        router.add_api_route(
            path + suffix,
            endpoint,
            methods=["GET"],
            include_in_schema=False,
            name=endpoint.__name__,
        )


def _stream_routers(app: Starlette) -> list[StreamRouter]:
    from .router import StreamRouter  # router imports this module

    routers = _compat.included_routers(app.routes)
    return [router for router in routers if isinstance(router, StreamRouter)]
