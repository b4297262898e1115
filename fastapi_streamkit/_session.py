"""Litestar's ``set_session`` / ``clear_session`` for Starlette's `SessionMiddleware`."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import pydantic
from starlette.requests import HTTPConnection

from .exceptions import UsageError

__all__ = ["SessionMixin"]


class SessionMixin(HTTPConnection):
    """Adds ``set_session`` and ``clear_session`` to a connection class."""

    def _session_dict(self) -> dict[str, Any]:
        session = self.scope.get("session")
        if not isinstance(session, dict):
            raise UsageError(
                "set_session()/clear_session() need a session in scope['session'], found none: "
                "add starlette.middleware.sessions.SessionMiddleware to the app "
                "(app.add_middleware(SessionMiddleware, secret_key=...))"
            )
        return session

    def set_session(self, value: Mapping[str, Any] | pydantic.BaseModel | Any) -> None:
        """Replace the session's content with ``value``: a mapping, pydantic model or dataclass."""
        if isinstance(value, pydantic.BaseModel):
            data: Mapping[str, Any] = value.model_dump(mode="json")
        elif dataclasses.is_dataclass(value) and not isinstance(value, type):
            data = dataclasses.asdict(value)
        elif isinstance(value, Mapping):
            data = value
        else:
            raise TypeError(
                f"set_session() expects a mapping, pydantic model or dataclass instance, "
                f"got {type(value).__name__}"
            )
        session = self._session_dict()
        session.clear()
        session.update(data)

    def clear_session(self) -> None:
        """Empty the session; `SessionMiddleware` then expires its cookie."""
        self._session_dict().clear()
