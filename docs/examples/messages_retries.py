"""Retries and dead letters: a handler that keeps failing gets ``1 + max_retries`` attempts,
then the message goes to ``<topic>.dlq`` with an ``x-error`` header; a body that fails
validation goes there at once. The consumer keeps going.

Run it: ``python docs/examples/messages_retries.py``
"""

import json
from typing import Annotated

import anyio
from fastapi import FastAPI, Header, HTTPException
from pydantic import BaseModel

from fastapi_streamkit import StreamMessage, StreamRouter
from fastapi_streamkit.testing import TestStreamApp

router = StreamRouter()
attempts: list[int] = []
dead_letters: list[dict[str, object]] = []


class Payment(BaseModel):
    id: int
    amount: float


@router.subscriber("payments", max_retries=2)
async def charge(payment: Payment) -> str:
    attempts.append(payment.id)
    if payment.amount > 1000:
        raise HTTPException(402, "card declined")
    return f"charged {payment.id}"


@router.subscriber("payments.dlq")  # dead letters are messages too: subscribe to them
async def park(request: StreamMessage, x_error: Annotated[str, Header()]) -> None:
    dead_letters.append({"body": await request.json(), "error": json.loads(x_error)})


app = FastAPI()
app.include_router(router)


async def main() -> None:
    async with TestStreamApp(app) as stream:
        declined = await stream.publish_and_wait("payments", {"id": 1, "amount": 5000})
        print("attempts:", declined.attempts, "error:", declined.error)
        invalid = await stream.publish_and_wait("payments", {"id": 2})
        print("attempts:", invalid.attempts, "error:", type(invalid.error).__name__)
        ok = await stream.publish_and_wait("payments", {"id": 3, "amount": 10})
        print("then:", ok.result)
        await stream.wait_handled(
            lambda h: h.message.topic == "payments.dlq" and h.message.body == invalid.message.body
        )
    for letter in dead_letters:
        print("dead letter:", letter)


if __name__ == "__main__":
    anyio.run(main)
