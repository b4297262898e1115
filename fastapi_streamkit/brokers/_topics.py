"""Topic names, ``{param}`` topic patterns and Redis-like ``<ms>-<seq>`` message ids."""

from __future__ import annotations

import re
import time

__all__ = ["IdClock", "TopicPattern", "check_publish", "format_id", "parse_id"]

_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_ID = re.compile(r"(\d{1,20})(?:-(\d{1,20}))?")
_MAX_PART = 2**64 - 1


class TopicPattern:
    """A topic name, or a pattern such as ``orders.{region}`` (``{name}``: one dot-free segment)."""

    __slots__ = ("_regex", "params", "pattern")

    def __init__(self, pattern: str) -> None:
        if not isinstance(pattern, str) or not pattern:
            raise ValueError(f"a topic must be a non-empty string, got {pattern!r}")
        self.pattern = pattern
        self.params: tuple[str, ...] = tuple(_PARAM.findall(pattern))
        literal = _PARAM.sub("", pattern)
        if "{" in literal or "}" in literal:
            raise ValueError(
                f"topic pattern {pattern!r} has a stray brace: write parameters as {{name}}, "
                "a Python identifier between braces"
            )
        if len(set(self.params)) != len(self.params):
            raise ValueError(f"topic pattern {pattern!r} repeats a parameter name")
        self._regex: re.Pattern[str] | None = None
        if self.params:
            parts = _PARAM.split(pattern)  # literal, name, literal, name, ..., literal
            regex = "".join(
                re.escape(part) if i % 2 == 0 else f"(?P<{part}>[^.]+)"
                for i, part in enumerate(parts)
            )
            self._regex = re.compile(regex)

    @property
    def is_pattern(self) -> bool:
        """True when the topic has ``{param}`` segments."""
        return self._regex is not None

    def match(self, topic: str) -> dict[str, str] | None:
        """The parameters when ``topic`` matches (``{}`` for a plain name), else None."""
        if self._regex is None:
            return {} if topic == self.pattern else None
        found = self._regex.fullmatch(topic)
        return None if found is None else found.groupdict()

    def matches(self, topic: str) -> bool:
        """True when ``topic`` is this name or matches this pattern."""
        if self._regex is None:
            return topic == self.pattern
        return self._regex.fullmatch(topic) is not None

    def __repr__(self) -> str:
        return f"TopicPattern({self.pattern!r})"


def parse_id(value: str | bytes | None) -> tuple[int, int] | None:
    """``"<ms>-<seq>"`` (or ``"<ms>"``) as a tuple; None for None or anything malformed."""
    if value is None:
        return None
    if isinstance(value, bytes):
        try:
            value = value.decode("ascii")
        except UnicodeDecodeError:
            return None
    found = _ID.fullmatch(value.strip())
    if found is None:
        return None
    ms, seq = int(found[1]), int(found[2] or 0)
    if ms > _MAX_PART or seq > _MAX_PART:
        return None
    return ms, seq


def format_id(key: tuple[int, int]) -> str:
    """The ``"<ms>-<seq>"`` form of a parsed id."""
    return f"{key[0]}-{key[1]}"


class IdClock:
    """Hands out increasing Redis-like ids: wall-clock milliseconds and a sequence number."""

    __slots__ = ("last",)

    def __init__(self) -> None:
        self.last: tuple[int, int] = (0, 0)

    def next(self) -> tuple[int, int]:
        """A new id, greater than every id handed out before (even if the clock goes back)."""
        ms = time.time_ns() // 1_000_000
        last_ms, last_seq = self.last
        self.last = (ms, 0) if ms > last_ms else (last_ms, last_seq + 1)
        return self.last


def check_publish(
    topic: str, body: bytes, headers: dict[str, str] | None
) -> tuple[bytes, dict[str, str]]:
    """The body as bytes and a copy of the headers; TypeError/ValueError when malformed."""
    if not isinstance(topic, str) or not topic or "{" in topic or "}" in topic:
        raise ValueError(f"publish needs a topic name without {{param}} parts, got {topic!r}")
    if not isinstance(body, bytes):
        if not isinstance(body, bytearray | memoryview):
            raise TypeError(
                f"a message body must be bytes, got {type(body).__name__}; encode it first "
                "(StreamRouter.publish encodes str and JSON-able objects for you)"
            )
        body = bytes(body)
    copied = dict(headers) if headers else {}
    for name, value in copied.items():
        if not isinstance(name, str) or not isinstance(value, str):
            raise TypeError(f"message headers must map str to str, got {name!r}: {value!r}")
    return body, copied
