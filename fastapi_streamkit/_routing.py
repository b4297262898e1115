"""The route class behind `StreamRoute`: streaming GET routes also answer HEAD."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi.routing import APIRoute

__all__ = ["StreamingAPIRoute"]


class StreamingAPIRoute(APIRoute):
    """An `APIRoute` whose GET routes also answer HEAD, as Starlette's `Route` does."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        methods = kwargs.get("methods")
        if methods is not None and "GET" in {m.upper() for m in methods}:
            kwargs["methods"] = {*(m.upper() for m in methods), "HEAD"}
        super().__init__(path, endpoint, **kwargs)
