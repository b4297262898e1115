"""Typed generator endpoints: each item validated and serialized through its model."""

from collections.abc import AsyncIterator

from fastapi import Depends, FastAPI, Response
from pydantic import BaseModel

from fastapi_streamkit import EventStream, JSONLines, StreamRouter

app = FastAPI()
router = StreamRouter()


class Order(BaseModel):
    id: int
    total: float


class InternalOrder(Order):
    margin: float  # never leaves the server: items are serialized as Order


def tenant(response: Response) -> str:
    response.headers["x-tenant"] = "acme"  # set in a dependency: sent with the head
    return "acme"


@router.get("/orders", response_class=EventStream)
async def orders(name: str = Depends(tenant)) -> AsyncIterator[Order]:
    yield Order(id=1, total=9.5)
    yield InternalOrder(id=2, total=20.0, margin=4.2)  # sent without margin
    yield {"id": "3", "total": "7.25"}  # validated (and coerced) like a response_model


@router.get("/orders.jsonl", response_class=JSONLines)
async def orders_lines(response: Response) -> AsyncIterator[Order]:
    response.set_cookie("cursor", "2")  # before the first yield: sent with the head
    yield Order(id=1, total=9.5)
    yield Order(id=2, total=20.0)


@router.get("/broken", response_class=EventStream)
async def broken() -> AsyncIterator[Order]:
    yield Order(id=1, total=1.0)
    yield {"id": "not a number"}  # fails validation: the stream is aborted, not ended


app.include_router(router)
