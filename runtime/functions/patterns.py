"""Blob path patterns: ``container/input/{blobname}.json`` and the output built from it.

The first path segment is the container (bucket); the rest is matched
against blob names. ``{name}`` captures one or more characters (``/``
included, as the real host does for the last capture); several captures
split at the first place that fits. ``{{`` and ``}}`` are literal braces.

An output pattern is filled from the trigger's binding data: the captures,
and the built-ins ``{rand-guid}`` and ``{DateTime}`` (UTC, as the real host
formats it); any other name that the binding data lacks is an error when
the app is loaded, not at the first blob.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

_TOKEN = re.compile(r"\{\{|\}\}|\{([^{}]*)\}")
BUILTINS = frozenset({"rand-guid", "datetime"})


class PatternError(ValueError):
    """A path pattern that cannot be used; one line for the user."""


@dataclass(frozen=True)
class BlobPattern:
    """A trigger's ``path``: the container, the literal prefix to list, the matcher."""

    text: str
    container: str
    blob_pattern: str
    prefix: str
    names: tuple[str, ...]
    regex: re.Pattern[str]

    def match(self, blob_name: str) -> dict[str, str] | None:
        found = self.regex.fullmatch(blob_name)
        if found is None:
            return None
        return {name: found.group(index + 1) for index, name in enumerate(self.names)}


def parse_trigger_path(text: str) -> BlobPattern:
    container, sep, rest = text.strip().lstrip("/").partition("/")
    if not container or "{" in container:
        raise PatternError(f"blob path {text!r}: the first segment must name the container")
    regex_parts: list[str] = []
    names: list[str] = []
    prefix: str | None = None
    position = 0
    for token in _TOKEN.finditer(rest if sep else ""):
        literal = rest[position : token.start()]
        regex_parts.append(re.escape(literal))
        position = token.end()
        whole = token.group(0)
        if whole in ("{{", "}}"):
            regex_parts.append(re.escape(whole[0]))
            continue
        if prefix is None:
            prefix = _unescape(rest[: token.start()])
        name = (token.group(1) or "").strip()
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", name):
            raise PatternError(f"blob path {text!r}: bad capture {{{token.group(1)}}}")
        if name in names:
            raise PatternError(f"blob path {text!r}: capture {{{name}}} appears twice")
        names.append(name)
        regex_parts.append("(.+?)")
    tail = rest[position:] if sep else ""
    regex_parts.append(re.escape(tail))
    if not names:
        # A container alone, or a fixed prefix: every blob under it (the real host's
        # "container" and "container/folder/" paths).
        prefix = _unescape(rest if sep else "")
        regex = re.compile(re.escape(prefix) + "(.+)", re.DOTALL)
        names = ["name"]
    else:
        regex = re.compile("".join(regex_parts), re.DOTALL)
    return BlobPattern(
        text=text,
        container=container,
        blob_pattern=rest,
        prefix=prefix or "",
        names=tuple(names),
        regex=regex,
    )


def _unescape(text: str) -> str:
    return text.replace("{{", "{").replace("}}", "}")


def template_names(text: str) -> list[str]:
    """The ``{names}`` an output pattern uses."""
    return [
        (token.group(1) or "").strip()
        for token in _TOKEN.finditer(text)
        if token.group(0) not in ("{{", "}}")
    ]


def check_template(text: str, available: set[str], where: str) -> None:
    """Raise :class:`PatternError` when ``text`` uses a name the binding data will lack."""
    lowered = {name.lower() for name in available} | BUILTINS
    for name in template_names(text):
        if name.lower() not in lowered:
            raise PatternError(
                f"{where}: path {text!r} uses {{{name}}}, which the trigger does not provide"
                + (f" (it provides {', '.join(sorted(available))})" if available else "")
            )


def fill_template(text: str, data: Mapping[str, object]) -> str:
    """Fill ``{names}`` from ``data`` (case-insensitive, like the real host)."""
    lowered = {key.lower(): value for key, value in data.items()}

    def replace(token: re.Match[str]) -> str:
        whole = token.group(0)
        if whole in ("{{", "}}"):
            return whole[0]
        name = (token.group(1) or "").strip()
        key = name.lower()
        if key in lowered:
            return str(lowered[key])
        if key == "rand-guid":
            return str(uuid.uuid4())
        if key == "datetime":
            return datetime.now(UTC).strftime("%Y-%m-%dT%H-%M-%SZ")
        raise PatternError(f"path {text!r}: no value for {{{name}}}")

    return _TOKEN.sub(replace, text)


def split_output_path(path: str) -> tuple[str, str]:
    """``container/blob/name`` → (container, blob name)."""
    container, sep, name = path.strip().lstrip("/").partition("/")
    if not container or not sep or not name:
        raise PatternError(f"output path {path!r} must be container/blob-name")
    return container, name
