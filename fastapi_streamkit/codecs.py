"""The one place that encodes and decodes JSON and MessagePack.

JSON uses msgspec when it is installed (the ``[msgpack]`` extra) and pydantic-core otherwise
(always present with FastAPI); both give the same output for the types users stream: dicts,
lists, pydantic models, dataclasses, datetime (ISO 8601), UUID, Decimal (as a string),
bytes (base64), NaN/inf (as null). MessagePack needs the ``[msgpack]`` extra.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pydantic
import pydantic_core

from .exceptions import DecodeError, EncodeError, MissingDependency

__all__ = [
    "Serializer",
    "json_decode",
    "json_encoder",
    "encode_error",
    "json_lines_encoder",
    "json_encode",
    "msgpack_decode",
    "msgpack_encoder",
    "msgpack_encode",
]

Serializer = Callable[[Any], Any]
"""Turns an object the default encoder cannot handle into a JSON-able value."""

msgspec: Any
try:
    import msgspec
except ImportError:  # pragma: no cover - exercised by the no-extras CI job
    msgspec = None


def _hook(serializer: Serializer | None) -> Callable[[Any], Any]:
    def enc_hook(obj: Any) -> Any:
        if isinstance(obj, pydantic.BaseModel):
            return obj.model_dump(mode="json")
        if serializer is not None:
            return serializer(obj)
        if isinstance(obj, (set, frozenset)):
            return list(obj)
        if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
            return dataclasses.asdict(obj)
        raise TypeError(
            f"Object of type {type(obj).__name__} is not JSON serializable; "
            "pass serializer= to turn it into a JSON-able value"
        )

    return enc_hook


def json_encoder(serializer: Serializer | None = None) -> Callable[[Any], bytes]:
    """Build an encoder ``obj -> JSON bytes``; ``serializer`` handles unknown types."""
    hook = _hook(serializer)
    if msgspec is not None:
        encode = msgspec.json.Encoder(enc_hook=hook, decimal_format="string").encode

        def encode_msgspec(obj: Any) -> bytes:
            try:
                return encode(obj)  # type: ignore[no-any-return]
            except (TypeError, ValueError, OverflowError, msgspec.EncodeError) as exc:
                raise EncodeError(f"cannot encode {type(obj).__name__} as JSON: {exc}") from exc

        return encode_msgspec

    def encode_pydantic(obj: Any) -> bytes:
        try:
            return pydantic_core.to_json(
                obj, fallback=hook, inf_nan_mode="null", bytes_mode="base64"
            )
        except (TypeError, ValueError, pydantic_core.PydanticSerializationError) as exc:
            raise EncodeError(f"cannot encode {type(obj).__name__} as JSON: {exc}") from exc

    return encode_pydantic


json_encode = json_encoder()
"""Encode ``obj`` as compact JSON bytes with the default rules."""


_json_decode: Callable[[bytes | str], Any] = (
    pydantic_core.from_json if msgspec is None else msgspec.json.decode
)


def json_decode(data: bytes | str, *, max_size: int | None = None) -> Any:
    """Decode a JSON document; raise `DecodeError` with the reason when it is not valid."""
    if max_size is not None:
        _check_size(data, max_size)
    try:
        return _json_decode(data)
    except ValueError as exc:
        raise DecodeError(f"expected a JSON document, got invalid JSON: {exc}") from exc


def _msgspec() -> Any:
    if msgspec is None:
        raise MissingDependency(
            "MessagePack support needs the 'msgpack' extra: "
            "pip install 'fastapi-streamkit[msgpack]'"
        )
    return msgspec


def msgpack_encoder(serializer: Serializer | None = None) -> Callable[[Any], bytes]:
    """Build an encoder ``obj -> MessagePack bytes``; ``serializer`` handles unknown types."""
    encode = _msgspec().msgpack.Encoder(enc_hook=_hook(serializer), decimal_format="string").encode

    def encode_msgpack(obj: Any) -> bytes:
        try:
            return encode(obj)  # type: ignore[no-any-return]
        except (TypeError, ValueError, OverflowError, msgspec.EncodeError) as exc:
            raise EncodeError(f"cannot encode {type(obj).__name__} as MessagePack: {exc}") from exc

    return encode_msgpack


_msgpack_encode: Callable[[Any], bytes] | None = (
    None
    if msgspec is None
    else msgspec.msgpack.Encoder(enc_hook=_hook(None), decimal_format="string").encode
)


def msgpack_encode(obj: Any) -> bytes:
    """Encode ``obj`` as MessagePack with the default rules."""
    if _msgpack_encode is None:
        _msgspec()  # raises MissingDependency
    try:
        return _msgpack_encode(obj)  # type: ignore[misc]
    except (TypeError, ValueError, OverflowError, msgspec.EncodeError) as exc:
        raise EncodeError(f"cannot encode {type(obj).__name__} as MessagePack: {exc}") from exc


def msgpack_decode(data: bytes, *, max_size: int | None = None) -> Any:
    """Decode one MessagePack object; raise `DecodeError` with the reason when it is not valid."""
    if max_size is not None:
        _check_size(data, max_size)
    if msgspec is None:
        _msgspec()  # raises MissingDependency
    try:
        return msgspec.msgpack.decode(data)
    except ValueError as exc:  # msgspec.DecodeError is a ValueError
        raise DecodeError(f"expected a MessagePack object, got invalid data: {exc}") from exc


def _check_size(data: bytes | str, max_size: int | None) -> None:
    if max_size is not None and len(data) > max_size:
        raise DecodeError(
            f"expected at most {max_size} bytes, got {len(data)}; raise the size limit to accept it"
        )


def json_lines_encoder() -> Callable[[list[Any]], bytes] | None:
    """msgspec's ``encode_lines(items)``: each item's JSON followed by ``\n``; None without it.

    The streaming hot path: one call encodes a whole batch of ready items. Compact JSON never
    holds a raw newline, so the result splits into items on ``\n``. Callers turn its
    ``TypeError``/``ValueError`` into `EncodeError` (see `encode_error`).
    """
    if msgspec is None:
        return None
    encoder = msgspec.json.Encoder(enc_hook=_hook(None), decimal_format="string")
    return encoder.encode_lines  # type: ignore[no-any-return]


def encode_error(obj: Any, exc: Exception) -> EncodeError:
    """The `EncodeError` for ``obj`` that failed to encode as JSON with ``exc``."""
    return EncodeError(f"cannot encode {type(obj).__name__} as JSON: {exc}")
