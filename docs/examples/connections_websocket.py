"""A MessagePack chat WebSocket: Origin check, size limit, per-message validation, and our
WebSocket in every dependency, also those added by ``include_router``."""

from __future__ import annotations

import pydantic
from fastapi import Depends, FastAPI, WebSocketException

from fastapi_streamkit import WebSocket
from fastapi_streamkit.router import StreamRouter


class ChatIn(pydantic.BaseModel):
    room: str
    text: str = pydantic.Field(max_length=500)


class ChatOut(pydantic.BaseModel):
    room: str
    text: str
    user: str


# Browsers from other origins are refused (403) before the endpoint runs; clients that send
# no Origin header (scripts, mobile apps) are allowed.
router = StreamRouter(websocket_origins=["https://chat.example", "http://localhost:8000"])


def current_user(websocket: WebSocket) -> str:
    """An include-level dependency: it gets our WebSocket too (same object as the endpoint)."""
    user = websocket.query_params.get("user")
    if not user:
        raise WebSocketException(1008, "pass ?user=<name>")
    return user


@router.websocket("/chat", receive=ChatIn, send=ChatOut)  # frame models, for AsyncAPI
async def chat(websocket: WebSocket, user: str = Depends(current_user)) -> None:
    await websocket.accept()
    # A frame over 1 MiB closes with 1009, bytes that are not MessagePack with 1007, a text
    # frame with 1003: iter_msgpack then simply stops, and nothing is logged as an error.
    async for data in websocket.iter_msgpack():
        try:
            message = ChatIn.model_validate(data)
        except pydantic.ValidationError as exc:
            await websocket.send_msgpack({"error": exc.errors(include_url=False)})
            continue
        await websocket.send_msgpack(ChatOut(room=message.room, text=message.text, user=user))


app = FastAPI()
app.include_router(router, prefix="/v1", dependencies=[Depends(current_user)])
