"""Several processes on one Redis: HTTP workers stream events, any process handles jobs.

export REDIS_URL=redis://127.0.0.1:6379/0
uvicorn docs.examples.brokers_workers:app --workers 4        # HTTP + consumers
python -m fastapi_streamkit worker docs.examples.brokers_workers:app   # consumers only
"""

import os

from fastapi import FastAPI
from pydantic import BaseModel

from fastapi_streamkit import EventStream, LastEventID, RedisBroker, StreamRouter

broker = RedisBroker(
    os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
    prefix=os.environ.get("REDIS_PREFIX", "shop:"),  # one namespace per app
    claim_idle=30.0,  # a job not acked within 30 s goes to another process
)
router = StreamRouter(broker=broker, health_path="/health")


class Thumbnail(BaseModel):
    image: int


@router.post("/thumbnails", status_code=202)
async def order_thumbnail(job: Thumbnail) -> dict[str, str]:
    return {"id": await router.publish("thumbnails", job)}


@router.subscriber("thumbnails")  # a group: each job runs in exactly one process
@router.publisher("thumbnails.ready")
async def make_thumbnail(job: Thumbnail) -> dict[str, int]:
    return {"image": job.image, "pid": os.getpid()}


@router.get("/events")
async def events(last_event_id: LastEventID) -> EventStream:
    # Broadcast from Redis: a browser reconnecting to any worker resumes after the id it saw.
    return EventStream(router.broker.subscribe("thumbnails.ready", last_id=last_event_id))


app = FastAPI()
app.include_router(router)
