"""Before: FastStream's FastAPI integration (``faststream.redis.fastapi.RedisRouter``)."""

from typing import Annotated, Any

from fastapi import Depends, FastAPI
from faststream.redis.fastapi import RedisRouter
from pydantic import BaseModel

router = RedisRouter("redis://127.0.0.1:6379/0", schema_url="/asyncapi")


class Order(BaseModel):
    sku: str
    quantity: int = 1


def tax_rate() -> float:
    return 0.2


priced = router.publisher("orders.priced")


@router.subscriber("orders")
@priced
async def price(order: Order, rate: Annotated[float, Depends(tax_rate)]) -> dict[str, Any]:
    return {"sku": order.sku, "total": round(order.quantity * 10 * (1 + rate), 2)}


@router.post("/orders", status_code=202)
async def create_order(order: Order) -> dict[str, bool]:
    await router.broker.publish(order, "orders")  # body first, then the channel
    return {"queued": True}


app = FastAPI()
app.include_router(router)
