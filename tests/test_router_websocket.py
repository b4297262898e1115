"""StreamRouter's WebSocket routes: our WebSocket injected, Origin checks, frame models."""

from typing import Annotated

import pytest
from fastapi import Depends, FastAPI
from pydantic import BaseModel
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect
from websockets.typing import Origin

from fastapi_streamkit import StreamRouter, WebSocket
from fastapi_streamkit._websocket_route import StreamWebSocketRoute
from tests._server import serve


class Ping(BaseModel):
    n: int


class Pong(BaseModel):
    n: int
    via: str


def build() -> tuple[FastAPI, StreamRouter]:
    router = StreamRouter(websocket_origins=["https://app.example"])

    def kind(websocket: WebSocket) -> str:  # dependencies get the same object
        return type(websocket).__name__

    @router.websocket("/echo", receive=Ping, send=Pong)
    async def echo(websocket: WebSocket, via: Annotated[str, Depends(kind)]) -> None:
        await websocket.accept()
        async for frame in websocket.iter_json():
            await websocket.send_json(Pong(n=Ping.model_validate(frame).n, via=via))

    app = FastAPI()
    app.include_router(router, prefix="/ws", dependencies=[Depends(kind)])
    return app, router


def test_websocket_routes_get_our_websocket_and_check_the_origin() -> None:
    app, _ = build()
    with serve(app) as server:
        url = f"ws://127.0.0.1:{server.port}/ws/echo"
        with connect(url, origin=Origin("https://app.example"), open_timeout=5) as ws:
            ws.send('{"n": 1}')
            assert ws.recv(timeout=5) == '{"n":1,"via":"WebSocket"}'
        with connect(url, open_timeout=5) as ws:  # no Origin: a non-browser client
            ws.send('{"n": 2}')
            assert '"n":2' in str(ws.recv(timeout=5))
        with pytest.raises(InvalidStatus) as refused:
            connect(url, origin=Origin("https://evil.example"), open_timeout=5)
        assert refused.value.response.status_code == 403


def test_websocket_frame_models_are_recorded_for_asyncapi() -> None:
    _, router = build()
    (route,) = [r for r in router.routes if isinstance(r, StreamWebSocketRoute)]
    assert (route.path, route.receive_model, route.send_model) == ("/echo", Ping, Pong)
