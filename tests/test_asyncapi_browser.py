"""The AsyncAPI page in a real headless Chromium: every channel shows, nothing leaves the host.

Debian's ``chromium`` driven by Playwright's Python package (``executable_path``; Playwright
never downloads a browser here). The screenshot lands in ``artifacts/asyncapi_page.png``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from fastapi_streamkit import StreamRouter, get_asyncapi
from tests._browser import ARTIFACTS, chromium
from tests._server import serve
from tests.test_asyncapi import rich_app

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as launched:
        yield launched


def docs_app() -> Any:
    app = rich_app()
    app.include_router(StreamRouter(asyncapi_path="/docs/asyncapi"))
    return app


def test_page_shows_every_channel_offline(browser: Any) -> None:
    app = docs_app()
    with serve(app) as running:
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        requested: list[str] = []
        page.on("request", lambda request: requested.append(request.url))
        page.goto(f"{running.url}/docs/asyncapi", timeout=15_000)
        document = get_asyncapi(app, base_url=running.url + "/")
        channels = page.locator("section.channel")
        channels.nth(len(document["channels"]) - 1).wait_for(timeout=10_000)
        assert channels.count() == len(document["channels"])
        addresses = page.locator("section.channel .address").all_inner_texts()
        assert addresses == [channel["address"] for channel in document["channels"].values()]
        for channel_id in document["channels"]:
            assert page.locator(f'[id="channel-{channel_id}"]').count() == 1
        body = page.inner_text("body")
        for operation_id in document["operations"]:
            assert operation_id in body
        for schema in document["components"]["schemas"]:
            assert page.locator(f'[id="schema-{schema}"]').count() == 1
        assert page.title() == "Rich — AsyncAPI"
        assert "Could not load" not in body
        assert requested == [f"{running.url}/docs/asyncapi", f"{running.url}/docs/asyncapi.json"]
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "asyncapi_page.png"), full_page=True)
        page.close()


def test_page_reports_a_document_it_cannot_load(browser: Any) -> None:
    """Served under a prefix the page finds its JSON relatively; a failing fetch is shown."""
    router = StreamRouter(asyncapi_path="/asyncapi")

    @router.subscriber("jobs")
    async def job() -> None:
        pass

    from fastapi import FastAPI

    app = FastAPI(title="Broken")
    app.include_router(router, prefix="/api/v1")
    with serve(app) as running:
        page = browser.new_page()
        page.route("**/asyncapi.json", lambda route: route.fulfill(status=500, body="boom"))
        page.goto(f"{running.url}/api/v1/asyncapi", timeout=15_000)
        error = page.locator(".error")
        error.wait_for(timeout=10_000)
        assert "asyncapi.json: HTTP 500" in error.inner_text()
        page.unroute("**/asyncapi.json")
        page.reload()
        page.locator("section.channel").first.wait_for(timeout=10_000)
        assert page.locator("section.channel .address").all_inner_texts() == ["jobs"]
        page.close()
