"""Litestar-style session helpers over Starlette's SessionMiddleware."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pydantic
from fastapi import FastAPI
from starlette.middleware.sessions import SessionMiddleware

from fastapi_streamkit import Request
from fastapi_streamkit.router import StreamRouter


class Login(pydantic.BaseModel):
    user: str
    at: dt.datetime


router = StreamRouter()


@router.post("/login/{user}")
def login(user: str, request: Request) -> dict[str, str]:
    # a mapping, a pydantic model or a dataclass; stored JSON-ready in the signed cookie
    request.set_session(Login(user=user, at=dt.datetime(2025, 1, 1, tzinfo=dt.UTC)))
    return {"hello": user}


@router.get("/me")
def me(request: Request) -> dict[str, Any]:
    return dict(request.session)


@router.post("/logout")
def logout(request: Request) -> None:
    request.clear_session()  # the middleware expires the cookie


app = FastAPI()
app.include_router(router)
app.add_middleware(SessionMiddleware, secret_key="change-me")
