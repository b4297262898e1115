"""The examples of docs/messages.md and docs/testing.md, run: each module loaded fresh."""

import subprocess
import sys
import time

import anyio
import pytest
from fastapi.testclient import TestClient

from ._examples import EXAMPLES, load


def test_messages_basic() -> None:
    example = load("messages_basic")
    with TestClient(example.app) as client:
        assert client.get("/health").status_code == 204
        response = client.post("/orders", json={"sku": "A-1", "quantity": 2})
        assert response.status_code == 202 and response.json()["message_id"]
        deadline = time.monotonic() + 5
        while not client.get("/shipped").json() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert client.get("/shipped").json() == [{"sku": "A-1", "quantity": 2, "carrier": "post"}]
    assert TestClient(example.app).get("/health").status_code == 503  # not running


def test_messages_retries(capsys: pytest.CaptureFixture[str]) -> None:
    example = load("messages_retries")
    anyio.run(example.main)
    assert example.attempts == [1, 1, 1, 3]  # 3 attempts, then the invalid one was never run
    first, second = example.dead_letters
    assert first == {
        "body": {"id": 1, "amount": 5000},
        "error": {"type": "HTTPException", "message": "402: card declined"},
    }
    assert second["error"]["type"] == "RequestValidationError"
    assert second["error"]["errors"][0]["loc"] == ["body", "amount"]
    out = capsys.readouterr().out
    assert "attempts: 3 error: 402: card declined" in out
    assert "then: charged 3" in out


def test_messages_hooks() -> None:
    example = load("messages_hooks")
    example.main()
    assert example.events == [
        "app lifespan started",
        "before_startup",
        "admin sub-app started",
        "after_startup",
        "handled 'hello'",
        "before_shutdown",
        "admin sub-app stopped",
        "after_shutdown",
        "app lifespan stopped",
    ]


def test_messages_di(capsys: pytest.CaptureFixture[str]) -> None:
    example = load("messages_di")
    anyio.run(example.main)
    out = capsys.readouterr().out
    assert "result: {'sku': 'A-1', 'region': 'eu', 'tenant': 'acme'}" in out
    assert "published to: ['orders.accepted']" in out
    assert "dead letter: orders.eu.dlq" in out
    assert example.app.state.audit[:3] == ["session opened", "saved A-1 x2", "session closed"]
    assert "with override: {'sku': 'B-2', 'region': 'us', 'tenant': 'umbrella'}" in out


def test_messages_testing_runs_under_pytest() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            str(EXAMPLES / "messages_testing.py"),
            "-q",
            "-p",
            "no:cacheprovider",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=EXAMPLES.parents[1],
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 passed" in result.stdout
