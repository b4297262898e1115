"""Content negotiation: read JSON or MessagePack bodies, answer in the format the client prefers."""

from __future__ import annotations

from typing import Any

import msgspec
from fastapi import FastAPI, HTTPException
from fastapi.responses import JSONResponse, Response

from fastapi_streamkit import Request
from fastapi_streamkit.router import StreamRouter

router = StreamRouter()  # its routes hand endpoints (and dependencies) our Request

FORMATS = ["application/json", "application/vnd.msgpack"]


async def read_body(request: Request) -> Any:
    """The body as JSON or MessagePack, by Content-Type; 400 if it does not decode."""
    media_type, _ = request.content_type
    if media_type == "application/vnd.msgpack":
        return await request.msgpack()  # invalid MessagePack -> HTTP 400 with the reason
    return await request.json()


def reply(request: Request, content: Any) -> Response:
    """Answer in the format the client prefers (Accept, q-values and wildcards honoured)."""
    chosen = request.accept.best_match(FORMATS)
    if chosen is None:
        raise HTTPException(406, f"this endpoint answers {' or '.join(FORMATS)}")
    if chosen == "application/vnd.msgpack":
        return Response(msgspec.msgpack.encode(content), media_type=chosen)
    return JSONResponse(content)


@router.post("/orders")
async def create_order(request: Request) -> Response:
    order = await read_body(request)
    return reply(request, {"received": order, "status": "accepted"})


app = FastAPI()
app.include_router(router, prefix="/api")
