"""Sync sources run in worker threads, under the package's own capacity limiter."""

import threading
from collections.abc import Iterator

from fastapi import FastAPI

from fastapi_streamkit import JSONLines

app = FastAPI()
app.state.release = threading.Event()  # the tests set it to end every feed at once


def blocking_feed(release: threading.Event) -> Iterator[dict[str, int]]:
    # A blocking client library (a DB cursor, a serial port...) is fine in a sync generator:
    # each next() runs in a worker thread; a disconnect closes it at its next yield.
    n = 0
    while not release.wait(0.05):  # blocks its worker thread, as blocking I/O does
        n += 1
        yield {"n": n}


@app.get("/feed")
def feed() -> JSONLines:
    return JSONLines(blocking_feed(app.state.release))


@app.get("/health")
def health() -> dict[str, str]:
    # A sync endpoint: it runs on FastAPI's own thread pool (40 threads), which open sync
    # streams never use, so it keeps answering while hundreds of feeds are open.
    return {"status": "ok"}
