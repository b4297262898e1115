"""The demo `make demo` starts, run as it does: ``uvicorn examples.demo:app`` in a subprocess."""

from __future__ import annotations

import json
import shutil
import signal
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests._server import serve_process
from tests.conftest import require

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    with serve_process("examples.demo:app", env={"PYTHONPATH": str(ROOT)}) as (_, port):
        yield f"http://127.0.0.1:{port}"


def read_events(url: str, count: int, headers: dict[str, str] | None = None) -> list[str]:
    """The first ``count`` SSE events (blocks of lines) of ``url``; bounded by timeouts."""
    blocks: list[str] = []
    buffer = ""
    with httpx.stream("GET", url, headers=headers, timeout=5.0) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for text in response.iter_text():
            buffer += text
            *done, buffer = buffer.split("\n\n")
            blocks += [block for block in done if block]
            if len(blocks) >= count:
                return blocks[:count]
    raise AssertionError(f"the stream ended after {blocks!r}")


def parse(block: str) -> dict[str, str]:
    return dict(line.split(": ", 1) for line in block.splitlines() if not line.startswith(":"))


def test_page_links_its_script_and_panels(base_url: str) -> None:
    page = httpx.get(base_url + "/", timeout=5.0)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert '<script type="module" src="/static/app.js">' in page.text
    assert 'data-panel="clock" data-src="/streams/clock"' in page.text
    assert 'data-panel="numbers"' in page.text
    script = httpx.get(base_url + "/static/app.js", timeout=5.0)
    assert script.status_code == 200
    assert "new EventSource(url)" in script.text
    assert 'addEventListener("tick"' in script.text


def test_clock_sends_retry_then_numbered_ticks(base_url: str) -> None:
    retry, *ticks = read_events(base_url + "/streams/clock?interval=0.02", 4)
    assert retry == "retry: 1000"
    events = [parse(block) for block in ticks]
    assert [e["event"] for e in events] == ["tick"] * 3
    assert [e["id"] for e in events] == ["1", "2", "3"]
    assert [json.loads(e["data"])["n"] for e in events] == [1, 2, 3]


@pytest.mark.parametrize(
    ("last_event_id", "first_id"), [("41", "42"), ("not-a-number", "1"), ("", "1")]
)
def test_clock_resumes_after_last_event_id(
    base_url: str, last_event_id: str, first_id: str
) -> None:
    headers = {"Last-Event-ID": last_event_id}
    _, first = read_events(base_url + "/streams/clock?interval=0.02", 2, headers)
    assert parse(first)["id"] == first_id


def test_clock_answers_head_without_a_body(base_url: str) -> None:
    response = httpx.head(base_url + "/streams/clock", timeout=5.0)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["x-accel-buffering"] == "no"
    assert response.content == b""


def test_numbers_is_json_lines(base_url: str) -> None:
    response = httpx.get(base_url + "/streams/numbers?count=4&interval=0", timeout=5.0)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/jsonl"
    lines = response.text.splitlines()
    assert [json.loads(line) for line in lines] == [{"n": n, "square": n * n} for n in (1, 2, 3, 4)]
    assert response.text.endswith("\n")


def test_a_client_that_leaves_does_not_stop_the_server(base_url: str) -> None:
    port = int(base_url.rsplit(":", 1)[1])
    for _ in range(20):
        with socket.create_connection(("127.0.0.1", port), timeout=5.0) as sock:
            sock.sendall(b"GET /streams/clock?interval=0.01 HTTP/1.1\r\nHost: demo\r\n\r\n")
            assert sock.recv(4096).startswith(b"HTTP/1.1 200")
    assert len(read_events(base_url + "/streams/clock?interval=0.01", 3)) == 3


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_stops_the_demo_while_the_page_is_open(signum: signal.Signals) -> None:
    with serve_process("examples.demo:app", env={"PYTHONPATH": str(ROOT)}) as (proc, port):
        with socket.create_connection(("127.0.0.1", port), timeout=5.0) as sock:
            sock.sendall(b"GET /streams/clock?interval=0.05 HTTP/1.1\r\nHost: demo\r\n\r\n")
            data = b""
            while b"event: tick" not in data:
                data += sock.recv(4096)
            proc.send_signal(signum)
            while chunk := sock.recv(4096):
                data += chunk
        assert data.endswith(b"\r\n0\r\n\r\n")  # the stream ended cleanly
        # uvicorn shuts down, then raises the signal it captured again: SIGTERM's default
        # action ends the process with -SIGTERM, SIGINT's KeyboardInterrupt with status 0.
        assert proc.wait(timeout=5.0) in (0, -signum)


def test_the_page_prints_the_events_in_a_browser(base_url: str) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:  # pragma: no cover - playwright is a dev dependency
        chromium = None
    if chromium is None:
        require("BROWSER", "needs Debian's chromium and playwright: apt-get install chromium")
    assert chromium is not None
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            page.goto(base_url + "/?interval=0.05")
            log = page.locator("#clock-log li")
            log.nth(2).wait_for(timeout=10_000)
            assert log.nth(0).inner_text().startswith("tick id=1 n=1 at ")
            assert page.locator("[data-panel=clock] [data-role=status]").inner_text() == "open"
            page.click("[data-action=fetch]")
            lines = page.locator("#numbers-log li")
            lines.nth(9).wait_for(timeout=10_000)
            assert lines.nth(9).inner_text() == 'line {"n":10,"square":100}'
        finally:
            browser.close()
