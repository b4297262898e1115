"""Testing message handlers with pytest and `TestStreamApp`.

Run it: ``pytest docs/examples/messages_testing.py`` (the ``anyio`` pytest plugin ships with
anyio; mark async tests ``@pytest.mark.anyio``).
"""

from collections.abc import Iterator
from typing import Annotated, Any

import pytest
from fastapi import Body, Depends, FastAPI
from pydantic import BaseModel

from fastapi_streamkit import StreamRouter
from fastapi_streamkit.testing import TestStreamApp

# -- the application under test (usually imported from your package) -----------------------


class Invoice(BaseModel):
    id: int
    amount: float
    currency: str


def exchange_rate() -> float:
    raise RuntimeError("calls the real exchange-rate service: override it in tests")


router = StreamRouter()


@router.subscriber("invoices")
@router.publisher("invoices.converted")
async def convert(
    invoice: Invoice, rate: Annotated[float, Depends(exchange_rate)]
) -> dict[str, Any]:
    return {"id": invoice.id, "eur": round(invoice.amount * rate, 2)}


@router.subscriber("invoices.converted")
async def notify(converted: Annotated[dict[str, Any], Body()]) -> str:
    return f"invoice {converted['id']}: {converted['eur']} EUR"


app = FastAPI()
app.include_router(router)

# -- the tests ---------------------------------------------------------------------------------


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def fixed_rate() -> Iterator[None]:
    app.dependency_overrides[exchange_rate] = lambda: 0.5
    yield
    app.dependency_overrides.clear()


@pytest.mark.anyio
@pytest.mark.usefixtures("fixed_rate")
async def test_an_invoice_is_converted_and_the_result_published() -> None:
    async with TestStreamApp(app, timeout=2) as stream:  # runs the app's lifespan
        handled = await stream.publish_and_wait(
            "invoices", {"id": 1, "amount": 10, "currency": "USD"}
        )
        assert handled.result == {"id": 1, "eur": 5.0}
        assert [message.topic for message in handled.published] == ["invoices.converted"]
        # the published result is handled by the next subscriber: wait for that too
        notified = await stream.wait_handled("invoices.converted")
        assert notified.result == "invoice 1: 5.0 EUR"


@pytest.mark.anyio
@pytest.mark.usefixtures("fixed_rate")
async def test_an_invalid_invoice_goes_to_the_dead_letter_topic() -> None:
    async with TestStreamApp(app, timeout=2) as stream:
        handled = await stream.publish_and_wait("invoices", {"id": 2})
        assert handled.attempts == 1  # validation failures are not retried
        assert handled.dead_letter is not None
        assert handled.dead_letter.topic == "invoices.dlq"
        assert "RequestValidationError" in handled.dead_letter.headers["x-error"]


@pytest.mark.anyio
async def test_a_failing_dependency_is_retried_then_dead_lettered() -> None:
    async with TestStreamApp(app, timeout=2) as stream:  # no override: exchange_rate raises
        handled = await stream.publish_and_wait("invoices", {"id": 3, "amount": 1, "currency": "X"})
        assert handled.attempts == 4  # 1 + max_retries (3 by default)
        assert isinstance(handled.error, RuntimeError)


@pytest.mark.anyio
@pytest.mark.usefixtures("fixed_rate")
async def test_the_handler_alone_without_starting_the_app() -> None:
    async with TestStreamApp(app, lifespan=False) as stream:  # no broker, hooks or sub-apps
        handled = await stream.publish_and_wait(
            "invoices", {"id": 4, "amount": 2, "currency": "USD"}
        )
        assert handled.result == {"id": 4, "eur": 1.0}
