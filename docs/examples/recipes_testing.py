"""Testing handlers whose dependencies talk to the outside world: override them.

Run it: ``pytest docs/examples/recipes_testing.py``.
"""

import time
from collections.abc import Iterator
from typing import Annotated, Any

import pytest
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient
from pydantic import BaseModel

from fastapi_streamkit import StreamRouter
from fastapi_streamkit.testing import TestStreamApp

# -- the application (usually imported from your package) ----------------------------------


class Signup(BaseModel):
    email: str


class Users:
    """The real one writes to a database."""

    def add(self, email: str) -> int:
        raise RuntimeError("needs the database: override get_users in tests")


def get_users() -> Iterator[Users]:
    users = Users()  # e.g. a session from a pool, closed after the handler
    yield users


router = StreamRouter()


@router.post("/signups", status_code=202)
async def sign_up(signup: Signup) -> dict[str, str]:
    return {"id": await router.publish("signups", signup)}


@router.subscriber("signups", max_retries=1)
@router.publisher("emails")
async def register(signup: Signup, users: Annotated[Users, Depends(get_users)]) -> dict[str, Any]:
    user_id = users.add(signup.email)
    return {"to": signup.email, "template": "welcome", "user_id": user_id}


app = FastAPI()
app.include_router(router)

# -- the tests --------------------------------------------------------------------------------


class FakeUsers(Users):
    def __init__(self) -> None:
        self.emails: list[str] = []

    def add(self, email: str) -> int:
        if email in self.emails:
            raise ValueError(f"{email} is taken")
        self.emails.append(email)
        return len(self.emails)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def users() -> Iterator[FakeUsers]:
    fake = FakeUsers()
    app.dependency_overrides[get_users] = lambda: fake  # read for each message handled
    yield fake
    app.dependency_overrides.clear()


@pytest.mark.anyio
async def test_a_signup_is_stored_and_welcomed(users: FakeUsers) -> None:
    async with TestStreamApp(app, timeout=2) as stream:
        handled = await stream.publish_and_wait("signups", {"email": "ada@example.com"})
    assert users.emails == ["ada@example.com"]
    assert handled.result == {"to": "ada@example.com", "template": "welcome", "user_id": 1}
    assert [message.topic for message in handled.published] == ["emails"]


@pytest.mark.anyio
async def test_a_taken_email_is_retried_then_dead_lettered(users: FakeUsers) -> None:
    users.emails.append("ada@example.com")
    async with TestStreamApp(app, timeout=2) as stream:
        handled = await stream.publish_and_wait("signups", {"email": "ada@example.com"})
    assert handled.attempts == 2  # 1 + max_retries
    assert isinstance(handled.error, ValueError)
    assert handled.dead_letter is not None and handled.dead_letter.topic == "signups.dlq"


def test_through_http_with_testclient(users: FakeUsers) -> None:
    with TestClient(app) as client:  # runs the lifespan: broker and consumers start
        assert client.post("/signups", json={"email": "bob@example.com"}).status_code == 202
        deadline = time.monotonic() + 2
        while not users.emails and time.monotonic() < deadline:
            time.sleep(0.01)
    assert users.emails == ["bob@example.com"]
