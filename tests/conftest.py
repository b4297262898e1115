from __future__ import annotations

import os

import pytest


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def require(flag: str, reason: str) -> None:
    """Skip with ``reason``, or fail when ``STREAMKIT_REQUIRE_<flag>=1`` (set by .ci/run)."""
    if os.environ.get(f"STREAMKIT_REQUIRE_{flag}") == "1":
        pytest.fail(f"{reason} (STREAMKIT_REQUIRE_{flag}=1 forbids skipping)")
    pytest.skip(reason)
