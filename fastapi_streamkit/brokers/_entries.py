"""How a message is laid out in a Redis stream entry: ``body`` plus one ``h:<name>`` per header.

An entry of any other shape (written by another program) is `MalformedEntry`; group consumers
move it to ``<topic>.dlq`` with the reason, broadcast subscribers log it and skip it.
"""

from __future__ import annotations

import json

__all__ = ["MalformedEntry", "decode_entry", "dead_letter_fields", "encode_entry"]

_BODY = b"body"
_HEADER = b"h:"


class MalformedEntry(ValueError):
    """A stream entry that is not a message this package wrote; the text says why."""


def encode_entry(body: bytes, headers: dict[str, str]) -> list[bytes]:
    """The stream fields of a message, flat: ``[b"body", body, b"h:<name>", value, ...]``."""
    fields = [_BODY, body]
    for name, value in headers.items():
        fields += (_HEADER + name.encode(), value.encode())
    return fields


def decode_entry(fields: dict[bytes, bytes] | None) -> tuple[bytes, dict[str, str]]:
    """The body and headers of a stream entry, or `MalformedEntry` naming what is wrong."""
    if not fields:
        raise MalformedEntry("the entry has no fields (it may have been deleted)")
    body = fields.get(_BODY)
    if body is None:
        raise MalformedEntry(f"the entry has no 'body' field; its fields: {_names(fields)}")
    headers: dict[str, str] = {}
    for name, value in fields.items():
        if name == _BODY:
            continue
        if not name.startswith(_HEADER):
            raise MalformedEntry(
                f"unexpected field {_text(name)!r}: expected 'body' and 'h:<header>' fields"
            )
        try:
            headers[name[2:].decode()] = value.decode()
        except UnicodeDecodeError:
            raise MalformedEntry(f"header field {_text(name)!r} is not UTF-8") from None
    return body, headers


def dead_letter_fields(
    message_id: str, fields: dict[bytes, bytes] | None, reason: str
) -> dict[bytes, bytes]:
    """The entry for ``<topic>.dlq``: the original body (if any), the reason in ``x-error``."""
    error = json.dumps({"type": "MalformedEntry", "message": reason})
    original = {_text(k): _text(v) for k, v in (fields or {}).items()}
    return {
        _BODY: (fields or {}).get(_BODY, b""),
        b"h:x-error": error.encode(),
        b"h:x-original-id": message_id.encode(),
        b"h:x-original-fields": json.dumps(original).encode(),
    }


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "backslashreplace")


def _names(fields: dict[bytes, bytes]) -> str:
    return ", ".join(repr(_text(name)) for name in fields)
