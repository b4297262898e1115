"""An app whose every streaming part shows up in its AsyncAPI document.

- ``POST /orders/{region}`` publishes an order to ``orders.{region}`` (plain HTTP: not in
  the AsyncAPI document, which is about what streams);
- ``ship`` receives orders on ``orders.{region}`` (pydantic body, a topic parameter, an
  ``X-Tenant`` header) and publishes a ``Shipment`` to ``orders.shipped``;
- ``audit`` receives every shipment on every worker (``broadcast=True``);
- ``GET /shipments`` streams shipments as Server-Sent Events (``-> AsyncIterator[Shipment]``);
- ``/chat/{room}`` is a WebSocket declaring the frames it receives and sends.

``StreamRouter(asyncapi_path="/asyncapi")`` serves the document at ``/asyncapi.json`` and a
page rendering it at ``/asyncapi``. Run it and open http://127.0.0.1:8000/asyncapi:

    uvicorn asyncapi_app:app            (from docs/examples)
    python -m fastapi_streamkit asyncapi asyncapi_app:app --yaml
"""

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import FastAPI, Header
from pydantic import BaseModel, Field

from fastapi_streamkit import EventStream, StreamRouter, WebSocket


class Address(BaseModel):
    city: str
    country: str = Field(description="ISO 3166-1 alpha-2 code", min_length=2, max_length=2)


class Order(BaseModel):
    """An order to ship."""

    id: int
    amount: float = Field(gt=0, description="Total, in euros")
    ship_to: Address


class Shipment(BaseModel):
    """An order on its way."""

    order_id: int
    carrier: str
    ship_to: Address


class ChatMessage(BaseModel):
    author: str
    text: str = Field(max_length=500)


router = StreamRouter(asyncapi_path="/asyncapi")
audit_log: list[Shipment] = []


@router.subscriber("orders.{region}")
@router.publisher("orders.shipped")
async def ship(
    order: Order,
    region: str,
    x_tenant: Annotated[str, Header(description="The shop the order belongs to")],
) -> Shipment:
    """Ship an order placed in a region.

    The carrier depends on the region; the shipment is published to ``orders.shipped``.
    """
    return Shipment(order_id=order.id, carrier=f"{region}-post/{x_tenant}", ship_to=order.ship_to)


@router.subscriber("orders.shipped", broadcast=True)
async def audit(shipment: Shipment) -> None:
    """Record every shipment, on every worker."""
    audit_log.append(shipment)


@router.post("/orders/{region}", status_code=202)
async def place_order(
    order: Order, region: str, x_tenant: Annotated[str, Header()]
) -> dict[str, str]:
    """Take an order over HTTP and hand it to the ``ship`` subscriber through the broker."""
    message_id = await router.publish(f"orders.{region}", order, headers={"x-tenant": x_tenant})
    return {"message_id": message_id}


@router.get("/shipments", response_class=EventStream)
async def shipments() -> AsyncIterator[Shipment]:
    """Shipments as they happen, one event each."""
    async for message in router.broker.subscribe("orders.shipped"):
        yield Shipment.model_validate_json(message.body)


@router.websocket("/chat/{room}", receive=ChatMessage, send=ChatMessage)
async def chat(websocket: WebSocket, room: str) -> None:
    """Chat in a room: every message received is validated and echoed back."""
    await websocket.accept()
    async for frame in websocket.iter_json():
        message = ChatMessage.model_validate(frame)
        await websocket.send_json(ChatMessage(author=f"{room}/{message.author}", text=message.text))


app = FastAPI(title="Shop", version="1.0.0", description="Orders, shipments and chat.")
app.include_router(router)
