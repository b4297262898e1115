"""After: the same app on fastapi_streamkit's `StreamRouter`."""

from typing import Annotated, Any

from fastapi import Depends, FastAPI
from pydantic import BaseModel

from fastapi_streamkit import RedisBroker, StreamRouter

router = StreamRouter(broker=RedisBroker("redis://127.0.0.1:6379/0"), asyncapi_path="/asyncapi")


class Order(BaseModel):
    sku: str
    quantity: int = 1


def tax_rate() -> float:
    return 0.2


@router.subscriber("orders")  # Redis Streams, a consumer group: once per app, not per worker
@router.publisher("orders.priced")
async def price(order: Order, rate: Annotated[float, Depends(tax_rate)]) -> dict[str, Any]:
    return {"sku": order.sku, "total": round(order.quantity * 10 * (1 + rate), 2)}


@router.post("/orders", status_code=202)
async def create_order(order: Order) -> dict[str, bool]:
    await router.publish("orders", order)  # the topic first, then the body
    return {"queued": True}


app = FastAPI()
app.include_router(router)
