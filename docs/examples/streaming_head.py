"""HEAD on a streaming route: headers only; the content is never created."""

from collections.abc import AsyncIterator

from fastapi import FastAPI

from fastapi_streamkit import Stream, StreamRouter

app = FastAPI()
app.state.exports_started = 0
router = StreamRouter()  # or APIRouter(route_class=StreamRoute)


async def export_csv() -> AsyncIterator[str]:
    app.state.exports_started += 1  # an expensive query would start here
    yield "id,name\n"
    yield "1,Ada\n"


@router.get("/export.csv")
async def export() -> Stream:
    return Stream(
        export_csv,  # the callable, not export_csv(): called when the body starts
        media_type="text/csv",
        headers={"content-disposition": "attachment; filename=export.csv"},
    )


app.include_router(router)  # GET /export.csv answers HEAD too, instead of 405
