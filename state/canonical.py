"""Canonical JSON: one text for one content, so state diffs in git stay clean.

:func:`canonical` turns a value into plain JSON data (objects with keys
sorted, tuples as lists, str/int subclasses such as enums as plain values)
and refuses anything JSON cannot hold exactly — a non-string key, NaN, a
set, an integer beyond 64 bits, an engine sentinel — naming where it sits.
:func:`encode` writes such data with a 2-space indent, UTF-8 as is, and a
trailing newline; :func:`compact` gives the one-line form used to compare
contents. Callers build top-level objects in the key order they want
shown; only nested user data (attributes, digests) is sorted here.

Encoding is orjson's (C, ~10x the standard library's indenting encoder,
which matters when a large state is written after every resource).
"""

from __future__ import annotations

import math
from typing import Any

import orjson

from modelform.state.errors import StateError

_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1


def canonical(value: Any, where: str) -> Any:
    """A deep copy of ``value`` as canonical JSON data; StateError if it is not JSON.

    ``where`` prefixes the message, followed by the path to the bad value
    (``resource service.api: attributes.env.A: …``).
    """
    try:
        return _canon(value)
    except _NotJSON as e:
        raise StateError(f"{where}{''.join(reversed(e.path))}: {e.problem}") from None


class _NotJSON(Exception):
    def __init__(self, problem: str) -> None:
        self.problem = problem
        self.path: list[str] = []


def _canon(value: Any) -> Any:
    kind = type(value)
    if kind is str or kind is bool or kind is int or value is None:
        if kind is int and not _INT_MIN <= value <= _INT_MAX:
            raise _NotJSON(f"integer {value} is beyond the 64-bit range of JSON readers")
        return value
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key in sorted(value, key=_string_key):
            try:
                out[key] = _canon(value[key])
            except _NotJSON as e:
                e.path.append(f".{key}")
                raise
        return out
    if isinstance(value, list | tuple):
        items = []
        for i, item in enumerate(value):
            try:
                items.append(_canon(item))
            except _NotJSON as e:
                e.path.append(f"[{i}]")
                raise
        return items
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _NotJSON(f"{value!r} cannot be stored in JSON")
        return float(value)
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, str):  # str enums and other subclasses: the plain string
        return str.__str__(value)
    if isinstance(value, int):
        return _canon(int(value))
    raise _NotJSON(f"a value of type {kind.__name__} cannot be stored in JSON")


def _string_key(key: object) -> str:
    if not isinstance(key, str):
        raise _NotJSON(f"key {key!r} is not a string")
    return key


def encode(data: Any) -> bytes:
    """Deterministic JSON text of canonical data (2-space indent, trailing newline)."""
    return orjson.dumps(data, option=orjson.OPT_INDENT_2) + b"\n"


def compact(data: Any) -> bytes:
    """One-line JSON of canonical data; equal bytes mean equal content (``1 != 1.0``)."""
    return orjson.dumps(data)


def dumps(data: Any) -> str:
    """:func:`encode` as text."""
    return encode(data).decode("utf-8")
