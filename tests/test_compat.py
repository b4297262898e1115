"""`_compat`: the FastAPI range check and the dependant FastAPI would build for an endpoint."""

import subprocess
import sys
import warnings
from pathlib import Path
from typing import Annotated

import fastapi
import pytest
from fastapi import Depends, FastAPI, Header
from fastapi.routing import APIRoute, APIRouter
from pydantic import BaseModel

from fastapi_streamkit import _compat
from fastapi_streamkit.exceptions import StreamkitError, UnsupportedFastAPIWarning

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("version", ["0.165.0", "0.165.9", "0.165.1rc1"])
def test_versions_in_the_tested_range_do_not_warn(version: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _compat.check_fastapi_version(version)


@pytest.mark.parametrize("version", ["0.164.9", "0.166.0", "1.0.0", "0.99", "garbage"])
def test_versions_outside_the_tested_range_warn(version: str) -> None:
    with pytest.warns(UnsupportedFastAPIWarning, match=rf"fastapi {version} is installed"):
        _compat.check_fastapi_version(version)


def test_the_installed_fastapi_is_in_the_tested_range() -> None:
    low, high = _compat.TESTED_FASTAPI
    major, minor = (int(part) for part in fastapi.__version__.split(".")[:2])
    assert low <= (major, minor) < high


def test_the_warning_is_a_user_warning_and_a_package_error() -> None:
    assert issubclass(UnsupportedFastAPIWarning, UserWarning)
    assert issubclass(UnsupportedFastAPIWarning, StreamkitError)


def test_importing_the_package_warns_outside_the_range() -> None:
    code = (
        "import warnings, fastapi\n"
        "fastapi.__version__ = '0.170.0'\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        "    import fastapi_streamkit\n"
        "print([type(w.message).__name__ + ': ' + str(w.message) for w in caught])\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "UnsupportedFastAPIWarning: fastapi_streamkit is tested with" in done.stdout
    assert "fastapi 0.170.0 is installed" in done.stdout


class Item(BaseModel):
    name: str


async def audit() -> None:
    return None


async def user(x_user: Annotated[str, Header()]) -> str:
    return x_user


async def handler(item: Item, region: str, u: Annotated[str, Depends(user)]) -> None:
    return None


def test_build_dependant_matches_what_apiroute_builds() -> None:
    route = APIRoute("/orders.{region}", handler, dependencies=[Depends(audit)])
    ours = _compat.build_dependant(handler, path="/orders.{region}", dependencies=[Depends(audit)])
    assert [d.call for d in ours.dependencies] == [d.call for d in route.dependant.dependencies]
    assert [f.name for f in ours.path_params] == ["region"]
    assert [f.name for f in ours.body_params] == ["item"]
    assert ours.dependencies[1].header_params[0].alias == "x-user"
    assert ours.scope == route.dependant.scope == "function"
    assert _compat.embed_body_fields(ours) is route._embed_body_fields is False


def test_topic_patterns_name_path_parameters() -> None:
    dependant = _compat.build_dependant(handler, path="orders.{region}")
    assert [f.name for f in dependant.path_params] == ["region"]
    assert [f.name for f in _compat.build_dependant(handler).query_params] == ["region"]


def test_mark_routes_changed_bumps_the_routes_version() -> None:
    router = APIRouter()
    app = FastAPI()
    app.include_router(router)
    before = app.router._get_routes_version()
    _compat.mark_routes_changed(router)
    assert app.router._get_routes_version() == before + 1
