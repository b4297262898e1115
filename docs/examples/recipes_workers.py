"""Several workers sharing one Redis: each job is handled once, every result reaches every page.

Run it with 4 HTTP workers, and (optionally) consumers that serve no HTTP::

    export REDIS_URL=redis://127.0.0.1:6379/0
    uvicorn docs.examples.recipes_workers:app --workers 4
    python -m fastapi_streamkit worker docs.examples.recipes_workers:app
"""

import os

from fastapi import FastAPI
from pydantic import BaseModel

from fastapi_streamkit import EventStream, LastEventID, RedisBroker, StreamRouter

broker = RedisBroker(os.environ["REDIS_URL"], prefix=os.environ.get("REDIS_PREFIX", "shop:"))
router = StreamRouter(broker=broker, health_path="/health")


class Job(BaseModel):
    id: int


class Done(BaseModel):
    id: int
    worker: int


@router.post("/jobs", status_code=202)
async def submit(job: Job) -> dict[str, str]:
    return {"message_id": await router.publish("jobs", job)}  # any worker can take it


@router.subscriber("jobs")  # a consumer group: one worker handles each job, acked after
@router.publisher("jobs.done")
async def run_job(job: Job) -> Done:
    return Done(id=job.id, worker=os.getpid())


@router.get("/jobs/done")
async def results(last_event_id: LastEventID) -> EventStream:
    # Broadcast: whichever worker serves this page streams every result, and a reconnect
    # resumes from Redis's history, also after a restart.
    return EventStream(router.broker.subscribe("jobs.done", last_id=last_event_id))


app = FastAPI()
app.include_router(router)
