"""The demo ``make demo`` serves, in a real headless Chromium, as a newcomer would use it.

uvicorn runs ``examples.demo:app`` in a subprocess on a free port; Debian's ``chromium`` is
driven by Playwright's Python package (``executable_path``: Playwright never downloads a
browser). Screenshots land in ``artifacts/demo_*.png``. Every wait is bounded.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from tests._browser import chromium
from tests._server import serve_process

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "artifacts"
WAIT = 10_000  # ms, for anything the page should show
RETRY = 3000  # ms the page's EventSource waits before reconnecting (the demo's ?retry=)


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    env = {"PYTHONPATH": str(ROOT), "REDIS_URL": ""}  # the MemoryBroker, whatever the shell says
    with serve_process("examples.demo:app", env=env) as (_, port):
        yield f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as launched:
        yield launched


class Page:
    """A dashboard tab, with the JavaScript errors and WebSocket frames it saw."""

    def __init__(self, browser: Any, url: str) -> None:
        self.base_url = url.split("/?")[0].rstrip("/")
        self.page = browser.new_page(viewport={"width": 1280, "height": 1000})
        self.page.set_default_timeout(WAIT)
        self.errors: list[str] = []
        self.sent: list[str | bytes] = []
        self.received: list[str | bytes] = []
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.page.on("websocket", self._watch)
        self.page.goto(url)

    def _watch(self, websocket: Any) -> None:
        websocket.on("framesent", lambda payload: self.sent.append(payload))
        websocket.on("framereceived", lambda payload: self.received.append(payload))

    def panel(self, name: str, selector: str) -> Any:
        return self.page.locator(f"[data-panel={name}] {selector}")

    def wait_text(self, name: str, selector: str, text: str) -> None:
        """Wait until the panel's element shows ``text`` (Playwright polls, bounded)."""
        self.panel(name, f'{selector}:text-is("{text}")').wait_for()

    def event_ids(self) -> list[str]:
        items = self.panel("events", "li[data-id]")
        return [str(items.nth(i).get_attribute("data-id")) for i in range(items.count())]

    def screenshot(self, name: str) -> None:
        ARTIFACTS.mkdir(exist_ok=True)
        self.page.screenshot(path=str(ARTIFACTS / f"demo_{name}.png"), full_page=True)

    def close(self) -> None:
        self.page.close()
        assert self.errors == []


@pytest.fixture
def open_page(browser: Any, base_url: str) -> Iterator[Any]:
    pages: list[Page] = []

    def open_page(query: str = "") -> Page:
        pages.append(Page(browser, f"{base_url}/{query}"))
        return pages[-1]

    yield open_page
    for page in pages:
        page.close()


def post_note(base_url: str, author: str, text: str) -> str:
    response = httpx.post(f"{base_url}/api/notes", json={"author": author, "text": text})
    assert response.status_code == 202
    return str(response.json()["id"])


def events_after(base_url: str, last_id: str, count: int) -> list[dict[str, Any]]:
    """The server's own record: the next ``count`` events of ``/api/events`` after ``last_id``."""
    events: list[dict[str, Any]] = []
    headers = {"Last-Event-ID": last_id}
    with httpx.stream("GET", f"{base_url}/api/events", headers=headers, timeout=5.0) as response:
        buffer = ""
        for text in response.iter_text():
            buffer += text
            *blocks, buffer = buffer.split("\n\n")
            for block in blocks:
                fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
                if "id" in fields:
                    events.append({"id": fields["id"], **json.loads(fields["data"])})
            if len(events) >= count:
                return events
    raise AssertionError(f"/api/events ended after {events!r}")


def test_a_note_becomes_an_event_and_a_bad_one_a_dead_letter(open_page: Any) -> None:
    page = open_page()
    page.wait_text("events", "[data-role=status]", "open")
    page.wait_text("deadletters", "[data-role=status]", "open")
    page.wait_text("info", "[data-role=health]", "healthy")
    assert page.panel("info", "[data-role=broker]").inner_text() == "MemoryBroker"

    page.panel("notes", "input[name=author]").fill("Grace")
    page.panel("notes", "input[name=text]").fill("no darn spam here")
    page.panel("notes", "button[type=submit]").click()
    event = page.panel("events", "li[data-id]").filter(has_text="Grace")
    event.wait_for()
    # validated by the subscriber, words masked by its Depends(moderator) dependency
    assert event.inner_text().endswith("Grace no **** **** here (4 words)")
    assert "queued as message" in page.panel("notes", "[data-role=result]").inner_text()

    page.panel("notes", "input[name=author]").fill("")  # the form does not check: the handler does
    page.panel("notes", "input[name=text]").fill("a note without author")
    page.panel("notes", "button[type=submit]").click()
    letter = page.panel("deadletters", "li.error").filter(has_text="a note without author")
    letter.wait_for()
    text = letter.inner_text()
    assert "RequestValidationError" in text
    assert "body.author: String should have at least 1 character" in text
    assert '{"author":"","text":"a note without author"}' in text
    post_note(page.base_url, "Ada", "published after the dead letter")
    page.panel("events", "li").filter(has_text="after the dead letter").wait_for()
    assert page.panel("events", "li").filter(has_text="without author").count() == 0
    page.screenshot("dashboard")


def test_the_page_resumes_after_the_server_drops_its_streams(open_page: Any, base_url: str) -> None:
    page = open_page(f"?retry={RETRY}")
    page.wait_text("events", "[data-role=status]", "open")
    for n in (1, 2):
        post_note(base_url, "before", f"resume {n}")
    page.panel("events", "li[data-id]").filter(has_text="resume 2").wait_for()
    before = page.event_ids()

    page.panel("events", "[data-role=drop]").click()  # request_shutdown() ends the streams
    page.wait_text("events", "[data-role=status]", "reconnecting…")
    for n in (3, 4, 5):
        post_note(base_url, "during", f"resume {n}")
    post_note(base_url, "", "dead while away")  # and a dead letter, for the other stream
    gap = events_after(base_url, before[-1], 3)  # handled and published while disconnected
    assert [event["text"] for event in gap] == ["resume 3", "resume 4", "resume 5"]
    assert page.panel("events", "[data-role=status]").inner_text() == "reconnecting…"

    page.wait_text("events", "[data-role=status]", "open")
    post_note(base_url, "after", "resume 6")
    page.panel("events", "li[data-id]").filter(has_text="resume 6").wait_for()
    (after,) = events_after(base_url, gap[-1]["id"], 1)
    ids = page.event_ids()
    assert ids == [*before, *(event["id"] for event in gap), after["id"]]  # none lost, none twice
    page.panel("deadletters", "li").filter(has_text="dead while away").wait_for()
    assert page.panel("deadletters", "li").filter(has_text="dead while away").count() == 1
    resumed = f"reconnected: resuming after {before[-1]}"
    assert page.panel("events", "li.gap").inner_text() == resumed
    assert page.panel("events", "[data-role=resumes]").inner_text() == (
        f"reconnected 1×, last resumed after {before[-1]}"
    )
    page.screenshot("resumed")


def test_a_chat_message_round_trips_between_two_pages(open_page: Any) -> None:
    ann = open_page("?user=Ann")  # offers MessagePack first
    bob = open_page("?user=Bob&codec=json")  # offers JSON only
    ann.wait_text("chat", "[data-role=status]", "connected (MessagePack, binary frames)")
    bob.wait_text("chat", "[data-role=status]", "connected (JSON, text frames)")

    def say(page: Page, text: str) -> None:
        page.panel("chat", "input[name=text]").fill(text)
        page.panel("chat", "button[type=submit]").click()

    say(ann, "hello from Ann")
    bob.panel("chat", "li").filter(has_text="Ann: hello from Ann").wait_for()
    say(bob, "hi Ann, Bob here")
    ann.panel("chat", "li").filter(has_text="Bob: hi Ann, Bob here").wait_for()
    ann.panel("chat", "li").filter(has_text="Ann: hello from Ann").wait_for()
    assert ann.panel("chat", "li").count() == bob.panel("chat", "li").count() == 2

    # Ann's page encoded MessagePack itself, in a binary frame; Bob's sent a JSON text frame.
    assert [msgspec.msgpack.decode(frame) for frame in ann.sent] == [
        {"user": "Ann", "text": "hello from Ann"}
    ]
    assert [json.loads(frame) for frame in bob.sent] == [
        {"user": "Bob", "text": "hi Ann, Bob here"}
    ]
    assert all(isinstance(frame, bytes) for frame in ann.received)
    assert all(isinstance(frame, str) for frame in bob.received)
    heard = [msgspec.msgpack.decode(frame)["text"] for frame in ann.received]
    assert heard == ["hello from Ann", "hi Ann, Bob here"]

    say(ann, "")  # invalid: answered to Ann only, as an error frame
    error = ann.panel("chat", "li.error")
    error.wait_for()
    assert "server: text: String should have at least 1 character" in error.inner_text()
    assert bob.panel("chat", "li").count() == 2
    ann.screenshot("chat_msgpack")
    bob.screenshot("chat_json")


def test_the_mounted_sub_app_shows_its_lifespan_state(open_page: Any, base_url: str) -> None:
    page = open_page()
    page.wait_text("status", "[data-role=lifespan]", "running")
    requests = int(page.panel("status", "[data-role=requests]").inner_text())
    state = httpx.get(f"{base_url}/status/").json()  # the state its lifespan yielded
    started = page.panel("status", "[data-role=started]").get_attribute("data-iso")
    assert started == state["started_at"]
    assert state["requests"] > requests >= 1
    page.screenshot("status")


def test_the_asyncapi_link_opens_the_document(open_page: Any, base_url: str) -> None:
    page = open_page()
    page.panel("info", "[data-role=asyncapi]").click()
    page.page.wait_for_url(f"{base_url}/asyncapi")
    page.page.locator("section.channel").nth(4).wait_for()
    addresses = page.page.locator("section.channel .address").all_inner_texts()
    assert {"notes", "events", "/ws/chat", "/api/events"} <= set(addresses)
    assert "handle_note" in page.page.inner_text("body")
    page.screenshot("asyncapi")


def test_the_pages_messagepack_codec_matches_msgspec(open_page: Any) -> None:
    values: list[Any] = [
        None, True, False, 0, 127, 128, 255, 256, 65_535, 65_536, 2**32, 2**40, -1, -32, -33,
        -128, -129, -40_000, -(2**31) - 1, 1.5, -0.25, "", "é", "x" * 31, "y" * 300, [1, [2, "a"]],
        list(range(20)), {"a": 1, "b": {"c": [None]}}, {f"k{i}": i for i in range(17)},
    ]  # fmt: skip
    page = open_page()
    encoded, decoded = page.page.evaluate(
        """async ([values, bytes]) => {
            const { encode, decode } = await import("/static/msgpack.js");
            return [Array.from(encode(values)), decode(new Uint8Array(bytes))];
        }""",
        [values, list(msgspec.msgpack.encode(values))],
    )
    assert bytes(encoded) == msgspec.msgpack.encode(values)  # the same bytes as msgspec
    assert decoded == values


def test_ctrl_c_stops_the_demo_while_a_page_is_open(browser: Any) -> None:
    env = {"PYTHONPATH": str(ROOT), "REDIS_URL": ""}
    with serve_process("examples.demo:app", env=env) as (server, port):
        page = Page(browser, f"http://127.0.0.1:{port}/")
        page.wait_text("events", "[data-role=status]", "open")
        page.wait_text("chat", "[data-role=status]", "connected (MessagePack, binary frames)")
        server.send_signal(signal.SIGINT)  # two event streams and a WebSocket are open
        assert server.wait(timeout=10) == 0
        page.wait_text("events", "[data-role=status]", "reconnecting…")
        page.close()
