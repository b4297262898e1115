"""Dependency injection in message handlers: a subscriber written like a FastAPI endpoint.

The handler takes the message body as a pydantic model, a path parameter from the topic
pattern, a header (case-insensitive; ``x_tenant`` reads ``X-Tenant``), and a ``yield``
dependency whose teardown runs after the handler's reply was published. Its result is
published to ``orders.accepted``; a body that fails validation goes to ``orders.eu.dlq``.
In tests, ``app.dependency_overrides`` replaces the dependency, with or without a lifespan.

Run it: ``python docs/examples/messages_di.py``
"""

from collections.abc import AsyncIterator
from typing import Annotated, Any

import anyio
from fastapi import Depends, FastAPI, Header, Request
from pydantic import BaseModel

from fastapi_streamkit import StreamRouter
from fastapi_streamkit.testing import TestStreamApp


class Order(BaseModel):
    sku: str
    quantity: int


class Session:
    """A stand-in for a database session: it records what happens to it."""

    def __init__(self, audit: list[str]) -> None:
        self.audit = audit

    def save(self, order: Order) -> None:
        self.audit.append(f"saved {order.sku} x{order.quantity}")


def audit_log(request: Request) -> list[str]:
    """A sync dependency; ``request`` is the `StreamMessage`, ``request.app`` the app."""
    audit: list[str] = request.app.state.audit
    return audit


async def get_session(audit: Annotated[list[str], Depends(audit_log)]) -> AsyncIterator[Session]:
    audit.append("session opened")
    try:
        yield Session(audit)
    finally:
        audit.append("session closed")  # after the reply was published


router = StreamRouter()


@router.subscriber("orders.{region}")
@router.publisher("orders.accepted")
async def accept_order(
    order: Order,
    region: str,
    x_tenant: Annotated[str, Header()],
    session: Annotated[Session, Depends(get_session)],
) -> dict[str, Any]:
    session.save(order)
    return {"sku": order.sku, "region": region, "tenant": x_tenant}


app = FastAPI()
app.state.audit = []
app.include_router(router)


async def fake_session(audit: Annotated[list[str], Depends(audit_log)]) -> AsyncIterator[Session]:
    audit.append("fake session")
    yield Session(audit)


async def main() -> None:
    async with TestStreamApp(app, lifespan=False) as stream:  # handlers called directly
        ok = await stream.publish_and_wait(
            "orders.eu", {"sku": "A-1", "quantity": 2}, headers={"X-Tenant": "acme"}
        )
        print("result:", ok.result)
        print("published to:", [message.topic for message in ok.published])
        bad = await stream.publish_and_wait("orders.eu", {"sku": "A-1"}, headers={"X-Tenant": "a"})
        assert bad.dead_letter is not None
        print("dead letter:", bad.dead_letter.topic, bad.dead_letter.headers["x-error"])
    print("audit:", app.state.audit)

    app.dependency_overrides[get_session] = fake_session  # read when a message is handled
    async with TestStreamApp(app, lifespan=False) as stream:
        handled = await stream.publish_and_wait(
            "orders.us", {"sku": "B-2", "quantity": 1}, headers={"x-tenant": "umbrella"}
        )
        print("with override:", handled.result, app.state.audit[-2:])
    app.dependency_overrides.clear()


if __name__ == "__main__":
    anyio.run(main)
