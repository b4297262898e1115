"""fastapi_streamkit.codecs: one set of rules for JSON and MessagePack, with or without msgspec."""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import importlib.util
import math
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import msgspec
import pydantic
import pytest

from fastapi_streamkit import codecs
from fastapi_streamkit.exceptions import DecodeError, EncodeError, MissingDependency


@dataclasses.dataclass
class Point:
    x: int
    y: int


class User(pydantic.BaseModel):
    name: str
    joined: dt.date


class Opaque:
    def __init__(self, value: int) -> None:
        self.value = value


@pytest.fixture(scope="module")
def fallback() -> Iterator[ModuleType]:
    """A copy of `codecs` loaded as if msgspec were not installed (pydantic-core JSON only)."""
    saved = sys.modules.get("msgspec")
    sys.modules["msgspec"] = None  # type: ignore[assignment]  # makes `import msgspec` fail
    try:
        path = Path(codecs.__file__)
        spec = importlib.util.spec_from_file_location("fastapi_streamkit._codecs_fallback", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        if saved is not None:
            sys.modules["msgspec"] = saved
    yield module


JSON_TABLE: list[tuple[Any, bytes]] = [
    ({"a": [1, 2.5, None, True]}, b'{"a":[1,2.5,null,true]}'),
    ("数据", '"数据"'.encode()),
    (dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC), b'"2024-01-02T03:04:05Z"'),
    (dt.datetime(2024, 1, 2, 3, 4, 5), b'"2024-01-02T03:04:05"'),
    (dt.date(2024, 1, 2), b'"2024-01-02"'),
    (uuid.UUID(int=1), b'"00000000-0000-0000-0000-000000000001"'),
    (decimal.Decimal("1.10"), b'"1.10"'),
    (Point(1, 2), b'{"x":1,"y":2}'),
    (User(name="ann", joined=dt.date(2024, 1, 1)), b'{"name":"ann","joined":"2024-01-01"}'),
    ([{1}], b"[[1]]"),
    (b"\x00\x01", b'"AAE="'),
    ([math.nan, math.inf], b"[null,null]"),
]


@pytest.mark.parametrize(("value", "expected"), JSON_TABLE)
@pytest.mark.parametrize("backend", ["msgspec", "pydantic-core"])
def test_json_encode_defaults(
    value: Any, expected: bytes, backend: str, fallback: ModuleType
) -> None:
    module = codecs if backend == "msgspec" else fallback
    assert module.json_encode(value) == expected


@pytest.mark.parametrize("backend", ["msgspec", "pydantic-core"])
def test_json_serializer_handles_unknown_types(backend: str, fallback: ModuleType) -> None:
    module = codecs if backend == "msgspec" else fallback
    encode = module.json_encoder(lambda obj: {"opaque": obj.value})
    assert encode([Opaque(3)]) == b'[{"opaque":3}]'
    with pytest.raises(EncodeError, match="Opaque.*serializer=") as info:
        module.json_encode(Opaque(3))
    assert isinstance(info.value, TypeError)


@pytest.mark.parametrize("backend", ["msgspec", "pydantic-core"])
@pytest.mark.parametrize("data", [b"{", b'{"a": }', "[1,", b"\xff"])
def test_json_decode_errors(backend: str, data: bytes | str, fallback: ModuleType) -> None:
    module = codecs if backend == "msgspec" else fallback
    with pytest.raises(DecodeError, match="expected a JSON document, got invalid JSON") as info:
        module.json_decode(data)
    assert isinstance(info.value, ValueError)


def test_decode_size_limits() -> None:
    assert codecs.json_decode(b"[1]", max_size=3) == [1]
    with pytest.raises(DecodeError, match="expected at most 3 bytes, got 5"):
        codecs.json_decode(b"[1,2]", max_size=3)
    packed = msgspec.msgpack.encode([1, 2, 3])
    with pytest.raises(DecodeError, match="at most 2 bytes"):
        codecs.msgpack_decode(packed, max_size=2)


def test_msgpack_round_trip_and_defaults() -> None:
    value = {
        "uuid": uuid.UUID(int=2),
        "price": decimal.Decimal("2.50"),
        "point": Point(3, 4),
        "user": User(name="bob", joined=dt.date(2023, 5, 6)),
        "raw": b"\x00",
    }
    assert codecs.msgpack_decode(codecs.msgpack_encode(value)) == {
        "uuid": "00000000-0000-0000-0000-000000000002",
        "price": "2.50",
        "point": {"x": 3, "y": 4},
        "user": {"name": "bob", "joined": "2023-05-06"},
        "raw": b"\x00",
    }
    encode = codecs.msgpack_encoder(lambda obj: obj.value)
    assert codecs.msgpack_decode(encode([Opaque(7)])) == [7]
    with pytest.raises(EncodeError, match="MessagePack"):
        codecs.msgpack_encode(Opaque(7))


@pytest.mark.parametrize("data", [b"\xc1", b"\x92\x01", b"", b"\x01\x02"])
def test_msgpack_decode_errors(data: bytes) -> None:
    with pytest.raises(DecodeError, match="expected a MessagePack object, got invalid data"):
        codecs.msgpack_decode(data)


def test_msgpack_without_the_extra_names_it(fallback: ModuleType) -> None:
    for call in (
        lambda: fallback.msgpack_encode([1]),
        lambda: fallback.msgpack_decode(b"\x91\x01"),
        lambda: fallback.msgpack_encoder(),
    ):
        with pytest.raises(MissingDependency, match=r"fastapi-streamkit\[msgpack\]") as info:
            call()
        assert isinstance(info.value, ImportError)
