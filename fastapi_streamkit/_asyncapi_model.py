"""The AsyncAPI document being built: servers, channels, operations, messages and schemas.

`asyncapi.py` reads the app and fills a `Document`; the types to describe are only collected
(`Schemas.add`) and their JSON schemas generated together at `Document.render`, so every
pydantic model is generated once, under ``components.schemas``, whatever uses it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

from pydantic import TypeAdapter
from pydantic.errors import PydanticUserError

from .exceptions import UsageError

__all__ = ["Channel", "Document", "Message", "Object", "Operation", "Schemas", "Shape"]

Mode = Literal["validation", "serialization"]
_SCHEMA_REF = "#/components/schemas/{model}"


@dataclass(frozen=True, slots=True)
class Object:
    """An object schema assembled from several described types (headers, embedded bodies)."""

    properties: tuple[tuple[str, Shape], ...]
    required: tuple[str, ...] = ()


Shape: TypeAlias = "int | Object"
"""A described type (an index into `Schemas`) or an `Object` of them."""


class Schemas:
    """Collects the types to describe; generates all their JSON schemas in one pass."""

    def __init__(self) -> None:
        self._inputs: list[tuple[Any, Mode, str]] = []
        self._schemas: dict[int, dict[str, Any]] = {}
        self.definitions: dict[str, Any] = {}

    def add(self, annotation: Any, mode: Mode, where: str) -> int:
        """The index of ``annotation`` (``where`` names its use in error messages)."""
        for index, (known, known_mode, _) in enumerate(self._inputs):
            if known_mode == mode and (known is annotation or _equal(known, annotation)):
                return index
        self._inputs.append((annotation, mode, where))
        return len(self._inputs) - 1

    def generate(self) -> None:
        """Generate every collected schema; shared models land once in `definitions`."""
        inputs = [
            (index, mode, self._adapter(annotation, where))
            for index, (annotation, mode, where) in enumerate(self._inputs)
        ]
        if not inputs:
            return
        try:
            schemas, definitions = TypeAdapter.json_schemas(inputs, ref_template=_SCHEMA_REF)
        except PydanticUserError:
            for index, mode, adapter in inputs:  # find the culprit, to name it
                self._generate_one(adapter, mode, self._inputs[index][2])
            raise
        self._schemas = {index: schema for (index, _), schema in schemas.items()}
        self.definitions = dict(definitions.get("$defs", {}))

    def render(self, shape: Shape) -> dict[str, Any]:
        """The JSON schema of ``shape`` (after `generate`)."""
        if isinstance(shape, int):
            return self._schemas[shape]
        schema: dict[str, Any] = {
            "type": "object",
            "properties": {name: self.render(item) for name, item in shape.properties},
        }
        if shape.required:
            schema["required"] = list(shape.required)
        return schema

    @staticmethod
    def _adapter(annotation: Any, where: str) -> TypeAdapter[Any]:
        try:
            return TypeAdapter(annotation)
        except PydanticUserError as exc:
            raise UsageError(_undescribable(annotation, where, exc)) from exc

    @staticmethod
    def _generate_one(adapter: TypeAdapter[Any], mode: Mode, where: str) -> None:
        try:
            adapter.json_schema(mode=mode, ref_template=_SCHEMA_REF)
        except PydanticUserError as exc:
            raise UsageError(_undescribable(adapter, where, exc)) from exc


def _equal(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except Exception:  # an annotation with an odd __eq__: treat as different
        return False


def _undescribable(annotation: Any, where: str, exc: Exception) -> str:
    return (
        f"AsyncAPI: cannot describe {annotation!r} ({where}) as a JSON schema: "
        f"{str(exc).splitlines()[0]} Expected "
        "a pydantic model or a JSON-compatible type; annotate with one, or use Any to leave "
        "the payload undescribed"
    )


@dataclass(slots=True)
class Message:
    """One message of a channel."""

    name: str
    content_type: str = "application/json"
    payload: Shape | None = None
    headers: Shape | None = None


@dataclass(slots=True)
class Channel:
    """A topic or a path; ``messages`` by key."""

    address: str
    server: str
    description: str
    parameters: dict[str, str] = field(default_factory=dict)
    messages: dict[str, Message] = field(default_factory=dict)
    bindings: dict[str, Any] | None = None

    def add_message(self, message: Message) -> str:
        """The key of ``message`` in this channel, added unless an equal one is there."""
        key, number = _identifier(message.name), 1
        while key in self.messages and self.messages[key] != message:
            number += 1
            key = f"{_identifier(message.name)}_{number}"
        self.messages[key] = message
        return key


@dataclass(slots=True)
class Operation:
    """A ``send`` or ``receive`` of the application on one channel."""

    action: Literal["send", "receive"]
    channel: str
    messages: list[str]
    doc: str | None = None
    extensions: dict[str, Any] = field(default_factory=dict)
    bindings: dict[str, Any] | None = None


def _identifier(text: str) -> str:
    """A key safe in ``$ref`` pointers and URLs: ``orders.{region}`` -> ``orders.region``."""
    text = text.replace("{", "").replace("}", "")
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_.") or "root"


def unique(base: str, taken: dict[str, Any]) -> str:
    """``base`` made an identifier, suffixed ``_2``, ``_3``... until not in ``taken``."""
    key, number = _identifier(base), 1
    while key in taken:
        number += 1
        key = f"{_identifier(base)}_{number}"
    return key


@dataclass(slots=True)
class Document:
    """The document under construction; `render` produces the AsyncAPI dict."""

    info: dict[str, Any]
    servers: dict[str, dict[str, Any]] = field(default_factory=dict)
    channels: dict[str, Channel] = field(default_factory=dict)
    operations: dict[str, Operation] = field(default_factory=dict)
    schemas: Schemas = field(default_factory=Schemas)
    _channel_ids: dict[tuple[str, str], str] = field(default_factory=dict)

    def channel(self, server: str, address: str, description: str, parameter: str) -> str:
        """The id of the channel at ``address`` on ``server``, created on first use.

        ``parameter`` describes each ``{name}`` of the address.
        """
        key = (server, address)
        if key not in self._channel_ids:
            channel_id = unique(address, self.channels)
            names = re.findall(r"{([^}:]+)(?::[^}]*)?}", address)
            parameters = dict.fromkeys(names, parameter)
            self.channels[channel_id] = Channel(address, server, description, parameters)
            self._channel_ids[key] = channel_id
        return self._channel_ids[key]

    def operation(
        self, name: str, action: Literal["send", "receive"], channel_id: str, message: Message
    ) -> Operation:
        """Add an operation (its message only if it describes something) and return it."""
        keys: list[str] = []
        if message.payload is not None or message.headers is not None:
            keys.append(self.channels[channel_id].add_message(message))
        operation = Operation(action, channel_id, keys)
        self.operations[unique(name, self.operations)] = operation
        return operation

    def render(self) -> dict[str, Any]:
        """The AsyncAPI 3.0.0 document as a JSON-compatible dict."""
        self.schemas.generate()
        document: dict[str, Any] = {
            "asyncapi": "3.0.0",
            "info": self.info,
            "defaultContentType": "application/json",
        }
        if self.servers:
            document["servers"] = self.servers
        merged = {key: self._merge_messages(ch) for key, ch in self.channels.items()}
        document["channels"] = {
            key: self._channel(ch, merged[key][0]) for key, ch in self.channels.items()
        }
        document["operations"] = {
            key: self._operation(op, merged[op.channel][1]) for key, op in self.operations.items()
        }
        if self.schemas.definitions:
            document["components"] = {"schemas": self.schemas.definitions}
        return document

    def _merge_messages(self, channel: Channel) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
        """The channel's rendered messages, equal ones merged, and where each key went."""
        rendered: dict[str, dict[str, Any]] = {}
        moved: dict[str, str] = {}
        for key, message in channel.messages.items():
            out = self._message(message)
            moved[key] = next((k for k, known in rendered.items() if known == out), key)
            if moved[key] == key:
                rendered[key] = out
        return rendered, moved

    def _channel(self, channel: Channel, messages: dict[str, dict[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {"address": channel.address, "description": channel.description}
        if channel.server in self.servers:
            out["servers"] = [{"$ref": f"#/servers/{channel.server}"}]
        if channel.parameters:
            out["parameters"] = {k: {"description": v} for k, v in channel.parameters.items()}
        if messages:
            out["messages"] = messages
        if channel.bindings:
            out["bindings"] = self._resolve(channel.bindings)
        return out

    def _message(self, message: Message) -> dict[str, Any]:
        out: dict[str, Any] = {"name": message.name, "contentType": message.content_type}
        if message.payload is not None:
            out["payload"] = self.schemas.render(message.payload)
        if message.headers is not None:
            out["headers"] = self.schemas.render(message.headers)
        return out

    def _operation(self, operation: Operation, moved: dict[str, str]) -> dict[str, Any]:
        channel = operation.channel
        out: dict[str, Any] = {
            "action": operation.action,
            "channel": {"$ref": f"#/channels/{channel}"},
        }
        if operation.messages:
            keys = dict.fromkeys(moved[key] for key in operation.messages)
            refs = [f"#/channels/{channel}/messages/{key}" for key in keys]
            out["messages"] = [{"$ref": ref} for ref in refs]
        summary, _, description = (operation.doc or "").strip().partition("\n")
        if summary.strip():
            out["summary"] = summary.strip()
        if description.strip():
            out["description"] = description.strip()
        if operation.bindings:
            out["bindings"] = self._resolve(operation.bindings)
        out.update(operation.extensions)
        return out

    def _resolve(self, value: Any) -> Any:
        """``value`` with every `Object` in it (binding query/headers) rendered."""
        if isinstance(value, Object):
            return self.schemas.render(value)
        if isinstance(value, dict):
            return {key: self._resolve(item) for key, item in value.items()}
        return value
