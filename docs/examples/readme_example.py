from fastapi import FastAPI

from fastapi_streamkit import EventStream, LastEventID, StreamRouter

router = StreamRouter()  # an embedded broker; StreamRouter(broker=RedisBroker(url)) scales out

@router.subscriber("orders")  # a FastAPI-style handler for broker messages (pydantic, Depends)
@router.publisher("shipped")  # its return value is published to "shipped"
async def ship(order: dict[str, str]) -> dict[str, str]:
    return {"order": order["id"], "status": "shipped"}

@router.get("/shipped")  # Server-Sent Events; a reconnecting browser resumes where it was
async def shipped(last_event_id: LastEventID) -> EventStream:
    return EventStream(router.broker.subscribe("shipped", last_id=last_event_id))

app = FastAPI()
app.include_router(router)  # the broker and the handler start with the app
