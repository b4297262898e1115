"""Chat over a WebSocket: MessagePack frames, with JSON as the fallback, fanned out by the broker.

The page offers the subprotocols ``msgpack`` and ``json``; the server picks MessagePack when
offered, else JSON (also for a client that offers none). Whatever was agreed, a binary frame is
read as MessagePack and a text frame as JSON. Each message is published to the ``chat`` topic,
and every open socket (in any worker, with Redis) forwards it to its client in that client's
codec.
"""

from __future__ import annotations

import contextlib
import datetime
import json
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any, Literal

import anyio
from fastapi import WebSocketDisconnect
from pydantic import BaseModel, Field, ValidationError
from starlette.types import Message as ASGIMessage

from fastapi_streamkit import StreamRouter, WebSocket
from fastapi_streamkit.brokers import Message
from fastapi_streamkit.codecs import json_decode, msgpack_decode
from fastapi_streamkit.exceptions import DecodeError

CHAT = "chat"
Codec = Literal["msgpack", "json"]
CODECS: tuple[Codec, ...] = ("msgpack", "json")  # in order of preference


class ChatIn(BaseModel):
    user: str = Field(min_length=1, max_length=40)
    text: str = Field(min_length=1, max_length=500)


class ChatOut(ChatIn):
    kind: Literal["message", "error"] = "message"
    at: datetime.datetime


async def send(websocket: WebSocket, codec: Codec, frame: ChatOut) -> None:
    data = frame.model_dump(mode="json")
    if codec == "msgpack":
        await websocket.send_msgpack(data)  # one binary frame
    else:
        await websocket.send_json(data)  # one text frame


def decode(message: ASGIMessage) -> Any:
    """A binary frame is MessagePack, a text frame JSON; `DecodeError` says what is wrong."""
    raw = message.get("bytes")
    return msgpack_decode(raw) if raw is not None else json_decode(message["text"])


def error_frame(exc: DecodeError | ValidationError) -> ChatOut:
    if isinstance(exc, ValidationError):
        text = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
    else:
        text = str(exc)
    now = datetime.datetime.now(datetime.UTC)
    return ChatOut(kind="error", user="server", text=text[:500], at=now)


async def forward(messages: AsyncIterator[Message], websocket: WebSocket, codec: Codec) -> None:
    """Send every chat message published (by any socket, in any worker) to this client."""
    with contextlib.suppress(WebSocketDisconnect):  # gone: the receive loop sees it too
        async for message in messages:
            await send(websocket, codec, ChatOut.model_validate(json.loads(message.body)))


async def handle(router: StreamRouter, websocket: WebSocket, codec: Codec, frame: Any) -> None:
    """Publish a valid message to everyone; answer an invalid one to its sender only."""
    try:
        incoming = ChatIn.model_validate(decode(frame))
    except (DecodeError, ValidationError) as exc:
        await send(websocket, codec, error_frame(exc))
        return
    now = datetime.datetime.now(datetime.UTC)
    await router.publish(CHAT, ChatOut(**incoming.model_dump(), at=now))


def add_chat(router: StreamRouter) -> None:
    """``/ws/chat``; ``receive``/``send`` name the frame models for the AsyncAPI document."""

    @router.websocket("/ws/chat", receive=ChatIn, send=ChatOut)
    async def chat(websocket: WebSocket) -> None:
        offered = websocket.scope.get("subprotocols", [])
        codec: Codec = next((codec for codec in CODECS if codec in offered), "json")
        # Subscribe before accepting: once the page sees the socket open, it misses nothing.
        async with aclosing(router.broker.subscribe(CHAT)) as messages:
            await websocket.accept(subprotocol=codec if codec in offered else None)
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(forward, messages, websocket, codec)
                # receive() enforces WebSocket.max_message_size (1 MiB): bigger closes with 1009
                while (frame := await websocket.receive())["type"] != "websocket.disconnect":
                    await handle(router, websocket, codec, frame)
                tasks.cancel_scope.cancel()  # the client left: stop forwarding
