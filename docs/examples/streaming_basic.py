"""Streaming responses: text chunks, JSON Lines, lazy content, headers, cookies, background."""

from collections.abc import AsyncIterator

from fastapi import FastAPI
from starlette.background import BackgroundTask

from fastapi_streamkit import JSONLines, Stream

app = FastAPI()
app.state.reports = []


async def countdown(start: int) -> AsyncIterator[str]:
    for n in range(start, 0, -1):
        yield f"{n}...\n"
    yield "liftoff!\n"


@app.get("/countdown")
async def stream_text() -> Stream:
    # Any sync or async iterable of str / bytes / memoryview, like Starlette's StreamingResponse.
    return Stream(countdown(3), media_type="text/plain")


@app.get("/rows.jsonl")
async def stream_rows() -> JSONLines:
    rows = ({"id": n, "name": f"row {n}"} for n in range(1, 4))
    # Any JSON-encodable item; one document per line (application/jsonl).
    return JSONLines(
        rows,
        headers={"x-total-count": "3"},
        cookies={"export": "rows"},
        background=BackgroundTask(app.state.reports.append, "rows exported"),
    )


@app.get("/lazy")
async def stream_lazy() -> Stream:
    # A zero-argument callable is called only when the body starts (never for HEAD).
    return Stream(lambda: countdown(2), media_type="text/plain")
