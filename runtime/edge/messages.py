"""Messages as ``azure-iot-device`` puts them on MQTT topics, and back.

A module sends on ``devices/{device}/modules/{module}/messages/events/{props}``
and receives on ``devices/{device}/modules/{module}/inputs/{input}/{props}``;
``props`` is ``key=value&…``, each part percent-encoded (``quote``, never
``+`` for a space). System properties have ``$.`` keys: ``$.on`` (output
name, on the way in only), ``$.mid``, ``$.cid``, ``$.uid``, ``$.ct``,
``$.ce``, ``$.exp``, ``$.ifid``; everything else is a custom property.
The SDK splits each part at ``=`` and decodes both halves, so an encoded
``&``, ``=`` or ``%`` in a value survives the round trip.
"""

from __future__ import annotations

import re
import urllib.parse
import uuid
from dataclasses import dataclass, field
from typing import Any

#: System property keys on the topic -> Message attribute.
SYSTEM_KEYS = {
    "$.mid": "message_id",
    "$.cid": "correlation_id",
    "$.uid": "user_id",
    "$.ct": "content_type",
    "$.ce": "content_encoding",
    "$.exp": "expiry",
    "$.ifid": "interface_id",
}
_ORDER = ("$.mid", "$.cid", "$.uid", "$.ct", "$.ce", "$.ifid", "$.exp")


@dataclass
class Message:
    body: bytes
    module: str
    output: str | None = None
    message_id: str | None = None
    correlation_id: str | None = None
    user_id: str | None = None
    content_type: str | None = None
    content_encoding: str | None = None
    expiry: str | None = None
    interface_id: str | None = None
    properties: dict[str, str] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """What results and duplicates are matched by: the correlation id, else the message id."""
        return self.correlation_id or self.message_id or ""

    def ensure_id(self) -> None:
        """Give a message that has neither id a message id, so it can be matched."""
        if not self.correlation_id and not self.message_id:
            self.message_id = f"mf-{uuid.uuid4()}"

    def system(self) -> dict[str, str | None]:
        return {
            "message_id": self.message_id,
            "correlation_id": self.correlation_id,
            "user_id": self.user_id,
            "content_type": self.content_type,
            "content_encoding": self.content_encoding,
            "module": self.module,
            "output": self.output,
        }

    def property_string(self) -> str:
        """The ``props`` part of an input topic (no ``$.on``: that names the sender's output)."""
        parts = [
            f"{key}={_quote(str(value))}"
            for key in _ORDER
            if (value := getattr(self, SYSTEM_KEYS[key])) is not None
        ]
        parts.extend(f"{_quote(k)}={_quote(v)}" for k, v in sorted(self.properties.items()))
        return "&".join(parts)

    def to_record(self) -> dict[str, Any]:
        record: dict[str, Any] = {
            "module": self.module,
            "output": self.output,
            "properties": self.properties,
        }
        for name in SYSTEM_KEYS.values():
            value = getattr(self, name)
            if value is not None:
                record[name] = value
        return record

    @classmethod
    def from_record(cls, record: dict[str, Any], body: bytes) -> Message:
        values = {name: record.get(name) for name in SYSTEM_KEYS.values()}
        return cls(
            body=body,
            module=str(record["module"]),
            output=record.get("output"),
            properties={str(k): str(v) for k, v in (record.get("properties") or {}).items()},
            **values,
        )


_PLAIN = re.compile(r"[A-Za-z0-9_.~-]*")


def _quote(value: str) -> str:
    if _PLAIN.fullmatch(value):
        return value  # nothing to encode (the common case: ids, numbers)
    return urllib.parse.quote(value, safe="")


def _unquote(value: str) -> str:
    return urllib.parse.unquote(value) if "%" in value else value


def parse_properties(text: str, message: Message) -> None:
    """Fill ``message`` from a topic's ``props`` part."""
    if not text:
        return
    for part in text.split("&"):
        if not part:
            continue
        raw_key, _, raw_value = part.partition("=")
        key = _unquote(raw_key)
        value = _unquote(raw_value)
        if key == "$.on":
            message.output = value or None
        elif key in SYSTEM_KEYS:
            setattr(message, SYSTEM_KEYS[key], value)
        elif key.startswith("$.") or key == "iothub-ack":
            continue  # $.to, $.cdid, … are the hub's to set, not the sender's
        else:
            message.properties[key] = value


def events_prefix(device: str, module: str) -> str:
    return f"devices/{device}/modules/{module}/messages/events/"


def input_topic(device: str, module: str, input_name: str, message: Message) -> str:
    return f"devices/{device}/modules/{module}/inputs/{input_name}/{message.property_string()}"


def inputs_filter(device: str, module: str) -> str:
    return f"devices/{device}/modules/{module}/inputs/#"
