"""Codec libraries side by side: which one `fastapi_streamkit.codecs` should use.

MessagePack: msgspec vs ormsgpack (vs the stdlib-free fallbacks we do not ship).
JSON: msgspec vs orjson vs pydantic-core vs the stdlib ``json`` (Starlette's choice).
Payloads: one small WebSocket-sized message, and a batch of 100 records with datetime, UUID and
nested lists (types ``send_json`` must handle by default). Prints operations/s and the ratio
to the slowest library, best of several repeats, all in one run.

    .venv/bin/python benchmarks/codecs.py
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import sys
import timeit
import uuid
from collections.abc import Callable
from importlib import metadata
from typing import Any

import msgspec
import orjson
import ormsgpack
import pydantic_core

from fastapi_streamkit import codecs

SMALL: dict[str, Any] = {"id": 12345, "user": "ann", "text": "hello, world", "ok": True}
BATCH: list[dict[str, Any]] = [
    {
        "id": uuid.UUID(int=i),
        "at": dt.datetime(2024, 1, 1, 12, 0, i % 60, tzinfo=dt.UTC),
        "name": f"item-{i}",
        "tags": ["a", "b", "c"],
        "price": i * 1.25,
    }
    for i in range(100)
]
# The same batch with datetime/UUID as strings: what the decoders get back.
BATCH_PLAIN: list[dict[str, Any]] = json.loads(msgspec.json.encode(BATCH))


def _json_default(obj: Any) -> Any:
    if isinstance(obj, dt.datetime):
        return obj.isoformat().replace("+00:00", "Z")
    if isinstance(obj, uuid.UUID):
        return str(obj)
    raise TypeError(type(obj).__name__)


def stdlib_dumps(obj: Any) -> bytes:
    return json.dumps(
        obj, separators=(",", ":"), ensure_ascii=False, default=_json_default
    ).encode()


MSGPACK: dict[str, tuple[Callable[[Any], bytes], Callable[[bytes], Any]]] = {
    "msgspec": (msgspec.msgpack.Encoder().encode, msgspec.msgpack.Decoder().decode),
    "ormsgpack": (
        functools.partial(ormsgpack.packb, option=ormsgpack.OPT_UTC_Z),
        ormsgpack.unpackb,
    ),
    "fastapi_streamkit.codecs": (codecs.msgpack_encode, codecs.msgpack_decode),
}
JSON: dict[str, tuple[Callable[[Any], bytes], Callable[[bytes], Any]]] = {
    "msgspec": (msgspec.json.Encoder().encode, msgspec.json.Decoder().decode),
    "orjson": (functools.partial(orjson.dumps, option=orjson.OPT_UTC_Z), orjson.loads),
    "pydantic-core": (pydantic_core.to_json, pydantic_core.from_json),
    "json (stdlib)": (stdlib_dumps, json.loads),
    "fastapi_streamkit.codecs": (codecs.json_encode, codecs.json_decode),
}


def rate(func: Callable[[], Any], *, repeat: int = 5) -> float:
    """Best operations/s over ``repeat`` timings of about 0.1 s each."""
    timer = timeit.Timer(func)
    number, _ = timer.autorange()
    return number / min(timer.repeat(repeat, number))


def table(
    title: str, libs: dict[str, tuple[Callable[[Any], bytes], Callable[[bytes], Any]]]
) -> None:
    print(f"\n{title}")
    for label, payload in (("small message", SMALL), ("100 records", BATCH)):
        plain = SMALL if payload is SMALL else BATCH_PLAIN
        results: dict[str, tuple[float, float]] = {}
        for name, (encode, decode) in libs.items():
            data = encode(payload)
            # datetime/UUID come back as strings (or as MessagePack timestamps: msgspec)
            decoded = json.loads(msgspec.json.encode(decode(data)))
            assert decoded == plain, f"{name} does not round-trip {label}"
            results[name] = (
                rate(functools.partial(encode, payload)),
                rate(functools.partial(decode, data)),
            )
        slow_enc = min(r[0] for r in results.values())
        slow_dec = min(r[1] for r in results.values())
        print(f"  {label}:")
        for name, (enc, dec) in results.items():
            print(
                f"    {name:26s} encode {enc:12,.0f}/s ({enc / slow_enc:5.1f}x)"
                f"   decode {dec:12,.0f}/s ({dec / slow_dec:5.1f}x)"
            )


def main() -> None:
    versions = ", ".join(
        f"{name} {metadata.version(name)}"
        for name in ("msgspec", "ormsgpack", "orjson", "pydantic-core")
    )
    print(f"Python {sys.version.split()[0]}; {versions}")
    table("MessagePack", MSGPACK)
    table("JSON", JSON)


if __name__ == "__main__":
    main()
