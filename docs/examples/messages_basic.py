"""A StreamRouter end to end: an HTTP endpoint publishes, a subscriber handles, its result is
published to another topic, whose subscriber records it; `/health` reports the broker.

Run it: ``uvicorn docs.examples.messages_basic:app`` then
``curl -X POST localhost:8000/orders -H 'content-type: application/json' -d '{"sku": "A-1"}'``
and ``curl localhost:8000/shipped``.
"""

from typing import Annotated, Any

from fastapi import Body, FastAPI
from pydantic import BaseModel

from fastapi_streamkit import StreamRouter

router = StreamRouter(health_path="/health")  # a MemoryBroker unless you pass broker=
shipped: list[dict[str, Any]] = []


class Order(BaseModel):
    sku: str
    quantity: int = 1


@router.post("/orders", status_code=202)
async def create_order(order: Order) -> dict[str, str]:
    message_id = await router.publish("orders.created", order)  # a model is sent as JSON
    return {"message_id": message_id}


@router.subscriber("orders.created")  # consumed as a group: each message handled once
@router.publisher("orders.shipped")  # the return value is published there
async def ship(order: Order) -> dict[str, Any]:
    return {"sku": order.sku, "quantity": order.quantity, "carrier": "post"}


@router.subscriber("orders.shipped")
async def record(shipment: Annotated[dict[str, Any], Body()]) -> None:
    shipped.append(shipment)


@router.get("/shipped")
async def list_shipped() -> list[dict[str, Any]]:
    return shipped


app = FastAPI()
app.include_router(router)  # the broker and the consumers start in the app's lifespan
