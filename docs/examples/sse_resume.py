"""Resuming: the browser sends the last ``id:`` it saw as ``Last-Event-ID`` when it reconnects."""

from collections.abc import AsyncIterator

from fastapi import FastAPI

from fastapi_streamkit import EventStream, LastEventID, ServerSentEvent, StreamRouter

app = FastAPI()
router = StreamRouter()  # its broker (a MemoryBroker by default) keeps a bounded history

NEWS = ["kickoff", "goal", "half time", "goal", "final whistle"]


async def news_after(last_seen: int) -> AsyncIterator[ServerSentEvent]:
    for number, text in enumerate(NEWS[last_seen:], start=last_seen + 1):
        yield ServerSentEvent(text, event="news", id=str(number))


@router.get("/news")
async def stream_news(last_event_id: LastEventID) -> EventStream:
    # The header is just a string (None when absent): validate it yourself.
    last_seen = int(last_event_id) if last_event_id and last_event_id.isdigit() else 0
    return EventStream(news_after(last_seen))


@router.post("/chat", status_code=202)
async def post_chat(text: str) -> dict[str, str]:
    return {"id": await router.publish("chat", text)}


@router.get("/chat")
async def stream_chat(last_event_id: LastEventID) -> EventStream:
    # Broker messages stream as they are: id: <message id>, data: <body>. Resuming from the
    # id the browser sends is the broker's job (with RedisBroker, across workers and restarts).
    return EventStream(router.broker.subscribe("chat", last_id=last_event_id))


app.include_router(router)
