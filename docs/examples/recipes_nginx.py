"""An app meant to run behind nginx: Server-Sent Events, a WebSocket, the client's real address.

Run it: ``uvicorn docs.examples.recipes_nginx:app --port 8000 --proxy-headers
--forwarded-allow-ips 127.0.0.1`` behind ``recipes_nginx.conf``.
"""

from fastapi import FastAPI, Request

from fastapi_streamkit import EventStream, LastEventID, StreamRouter, WebSocket

PING_INTERVAL = 20.0  # seconds; nginx's proxy_read_timeout must be longer

router = StreamRouter()


@router.post("/orders", status_code=202)
async def create_order(order: dict[str, str]) -> dict[str, str]:
    return {"id": await router.publish("orders", order)}


@router.get("/events/orders")
async def order_events(last_event_id: LastEventID) -> EventStream:
    # EventStream sends "X-Accel-Buffering: no": nginx passes each event on at once.
    orders = router.broker.subscribe("orders", last_id=last_event_id)
    return EventStream(orders, ping_interval=PING_INTERVAL)


@router.websocket("/ws/echo")
async def echo(websocket: WebSocket) -> None:
    await websocket.accept()
    async for text in websocket.iter_data():
        await websocket.send_data(text)


@router.get("/whoami")
async def whoami(request: Request) -> dict[str, str | None]:
    # With --proxy-headers, uvicorn reads nginx's X-Forwarded-For: the browser's address.
    return {"client": request.client.host if request.client else None}


app = FastAPI()
app.include_router(router)
