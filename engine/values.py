"""Values that are not known until apply, and helpers to spot them."""

from __future__ import annotations

from typing import Any


class Unknown:
    """A value known only after apply ("(known after apply)" in a plan).

    A single instance, :data:`UNKNOWN`, is used. It never compares equal to a
    real value, and a plan never counts it as a change by itself.
    """

    _instance: Unknown | None = None

    def __new__(cls) -> Unknown:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "(known after apply)"

    def __reduce__(self) -> str:
        return "UNKNOWN"


UNKNOWN = Unknown()

#: How an unknown value travels in JSON (plan files, -json views).
UNKNOWN_JSON = {"__unknown__": True}


def is_known(value: Any) -> bool:
    """True when ``value`` holds no :data:`UNKNOWN`, however deep."""
    if value is UNKNOWN:
        return False
    if isinstance(value, dict):
        return all(is_known(v) for v in value.values())
    if isinstance(value, list | tuple):
        return all(is_known(v) for v in value)
    return True


def to_json(value: Any) -> Any:
    if value is UNKNOWN:
        return dict(UNKNOWN_JSON)
    if isinstance(value, dict):
        return {k: to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    return value


def from_json(value: Any) -> Any:
    if isinstance(value, dict):
        if value == UNKNOWN_JSON:
            return UNKNOWN
        return {k: from_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [from_json(v) for v in value]
    return value
