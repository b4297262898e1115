"""`Accept`: content negotiation over an HTTP ``Accept`` header (RFC 9110, section 12.5.1)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

__all__ = ["Accept", "MediaRange", "parse_media_type"]


def parse_media_type(value: str) -> tuple[str, dict[str, str]]:
    """Split ``type/subtype; k=v`` into the lower-cased type and its parameters."""
    head, _, rest = value.partition(";")
    params: dict[str, str] = {}
    for item in _split_params(rest):
        key, eq, val = item.partition("=")
        key = key.strip().lower()
        if key and eq:
            val = val.strip()
            if len(val) >= 2 and val[0] == val[-1] == '"':
                val = val[1:-1].replace('\\"', '"').replace("\\\\", "\\")
            params[key] = val
    return head.strip().lower(), params


def _split_params(text: str) -> Iterator[str]:
    """Split on ``;`` outside double quotes."""
    start, quoted, escaped = 0, False, False
    for index, char in enumerate(text):
        if escaped:
            escaped = False
        elif char == "\\" and quoted:
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == ";" and not quoted:
            yield text[start:index]
            start = index + 1
    yield text[start:]


@dataclass(frozen=True)
class MediaRange:
    """One entry of an Accept header: ``type/subtype``, its parameters and its weight ``q``."""

    type: str
    subtype: str
    params: dict[str, str] = field(default_factory=dict, hash=False)
    q: float = 1.0

    @property
    def specificity(self) -> tuple[int, int]:
        """Rank for "the most specific range wins": exact > ``type/*`` > ``*/*``, then params."""
        exact = 0 if self.type == "*" else 1 if self.subtype == "*" else 2
        return exact, len(self.params)

    def matches(self, media_type: str) -> bool:
        """Whether ``media_type`` (no wildcards) falls in this range."""
        full, params = parse_media_type(media_type)
        kind, _, sub = full.partition("/")
        if self.type not in ("*", kind) or self.subtype not in ("*", sub):
            return False
        return all(params.get(key) == value for key, value in self.params.items())

    def __str__(self) -> str:
        extra = "".join(f";{key}={value}" for key, value in self.params.items())
        return f"{self.type}/{self.subtype}{extra}"


def _parse_range(item: str) -> MediaRange | None:
    full, params = parse_media_type(item)
    kind, slash, sub = full.partition("/")
    if not slash or not kind or not sub or (kind == "*" and sub != "*"):
        return None
    q = 1.0
    if "q" in params:
        try:
            q = float(params.pop("q"))
        except ValueError:
            return None
        if not 0.0 <= q <= 1.0:
            return None
    return MediaRange(kind, sub, params, q)


class Accept:
    """A parsed ``Accept`` header; a missing or empty header accepts everything (``*/*``)."""

    __slots__ = ("_ranges",)

    def __init__(self, header: str | None = None) -> None:
        ranges = [r for item in (header or "").split(",") if (r := _parse_range(item))]
        # stable sort: weight first, then specificity; ties keep the header's order
        ranges.sort(key=lambda r: (r.q, r.specificity), reverse=True)
        self._ranges: tuple[MediaRange, ...] = tuple(ranges) or (MediaRange("*", "*"),)

    def __iter__(self) -> Iterator[MediaRange]:
        """The media ranges, most preferred first."""
        return iter(self._ranges)

    def __repr__(self) -> str:
        return f"Accept({', '.join(f'{r};q={r.q:g}' for r in self._ranges)!r})"

    def quality(self, media_type: str) -> float:
        """The weight the client gives ``media_type``: the ``q`` of the most specific match."""
        best: MediaRange | None = None
        for candidate in self._ranges:
            if candidate.matches(media_type) and (
                best is None or candidate.specificity > best.specificity
            ):
                best = candidate
        return 0.0 if best is None else best.q

    def accepts(self, media_type: str) -> bool:
        """Whether the client accepts ``media_type`` (``q=0`` means "not acceptable")."""
        return self.quality(media_type) > 0.0

    def best_match(self, options: Sequence[str], default: str | None = None) -> str | None:
        """The option the client prefers (ties go to the earlier option), else ``default``."""
        best, best_q = default, 0.0
        for option in options:
            q = self.quality(option)
            if q > best_q:
                best, best_q = option, q
        return best
