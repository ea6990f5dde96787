"""``${...}`` references inside project-file strings.

A string is a *template*: literal text, ``$${`` (which stands for a
literal ``${``) and references. A reference names a variable or an
attribute of a declared thing::

    ${var.NAME}
    ${models.NAME.ATTR}        ${environments.NAME.ATTR}
    ${targets.NAME.ATTR}       ${services.NAME.ATTR}

Attribute names are free (``version``, ``url``, ``digest``...); what
each one means is up to the engine and the providers. A string that is
exactly one reference takes the referenced value with its type; a
reference inside longer text is converted to text. Strings in a loaded
``Config`` are still templates (``$${`` stays escaped): pass every value
through :func:`resolve` before use, even one without references.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from modelform.engine.config import SECTIONS
from modelform.engine.values import UNKNOWN

Path_ = tuple[str | int, ...]

#: What may follow ``${``: ``var`` or one of the resource sections.
REF_SECTIONS = ("var", *SECTIONS)

NAME_RE = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
VAR_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
ATTR_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class Ref:
    """One ``${...}`` reference and where it occurs.

    ``attr`` is None for ``var`` references. ``start``/``end`` are the
    offsets of ``${`` and one past ``}`` in the string at ``path``.
    """

    section: str
    name: str
    attr: str | None = None
    path: Path_ = ()
    start: int = 0
    end: int = 0

    @property
    def text(self) -> str:
        tail = f".{self.attr}" if self.attr is not None else ""
        return f"${{{self.section}.{self.name}{tail}}}"

    @property
    def address(self) -> str | None:
        """The resource address (``model.ridge``), or None for a variable."""
        kind = SECTIONS.get(self.section)
        return f"{kind}.{self.name}" if kind else None


class ReferenceSyntaxError(ValueError):
    """A malformed ``${...}``; ``offset`` is where it starts in the string."""

    def __init__(self, message: str, offset: int, path: Path_ = ()) -> None:
        super().__init__(message)
        self.message = message
        self.offset = offset
        self.path = path


class _Keep:
    def __repr__(self) -> str:
        return "KEEP"


#: What a :func:`substitute` lookup returns to leave a reference as it is.
KEEP: Any = _Keep()

#: A parsed template: literal text (already unescaped) and references.
Part = str | Ref


def parse_template(text: str, path: Path_ = ()) -> list[Part]:
    """Split ``text`` into literal strings and :class:`Ref` parts."""
    parts: list[Part] = []
    buf: list[str] = []
    i = 0
    while i < len(text):
        if text.startswith("$${", i):
            buf.append("${")
            i += 3
            continue
        if not text.startswith("${", i):
            buf.append(text[i])
            i += 1
            continue
        close = text.find("}", i + 2)
        if close < 0:
            raise ReferenceSyntaxError(
                f'unclosed "${{" in "{_clip(text[i:])}": add the closing "}}" '
                'or write "$${" for a literal "${"',
                i,
                path,
            )
        if buf:
            parts.append("".join(buf))
            buf = []
        parts.append(_parse_ref(text[i + 2 : close], i, close + 1, path))
        i = close + 1
    if buf:
        parts.append("".join(buf))
    return parts


def _clip(s: str, n: int = 40) -> str:
    return s if len(s) <= n else s[: n - 3] + "..."


def _parse_ref(expr: str, start: int, end: int, path: Path_) -> Ref:
    body = expr.strip()
    shown = "${" + expr + "}"
    pieces = body.split(".")
    section = pieces[0]
    if not body:
        raise ReferenceSyntaxError(f'empty reference "{shown}"', start, path)
    if section not in REF_SECTIONS:
        close = difflib.get_close_matches(section, REF_SECTIONS, n=1, cutoff=0.6)
        tail = f' (did you mean "{close[0]}"?)' if close else ""
        raise ReferenceSyntaxError(
            f'unknown reference "{shown}": "{section}" is not one of '
            f"{', '.join(REF_SECTIONS)}{tail}",
            start,
            path,
        )
    if section == "var":
        if len(pieces) != 2 or not VAR_NAME_RE.fullmatch(pieces[1]):
            raise ReferenceSyntaxError(
                f'malformed reference "{shown}": expected ${{var.NAME}}', start, path
            )
        return Ref("var", pieces[1], None, path, start, end)
    if (
        len(pieces) != 3
        or not NAME_RE.fullmatch(pieces[1])
        or len(pieces[1]) > 63
        or not ATTR_RE.fullmatch(pieces[2])
    ):
        raise ReferenceSyntaxError(
            f'malformed reference "{shown}": expected ${{{section}.NAME.ATTRIBUTE}}',
            start,
            path,
        )
    return Ref(section, pieces[1], pieces[2], path, start, end)


def walk_strings(value: Any, path: Path_ = ()) -> list[tuple[Path_, str]]:
    """Every string in ``value`` (not mapping keys) with its path."""
    out: list[tuple[Path_, str]] = []
    if isinstance(value, str):
        out.append((path, value))
    elif isinstance(value, dict):
        for k, v in value.items():
            out.extend(walk_strings(v, path + (k,)))
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            out.extend(walk_strings(v, path + (i,)))
    return out


def find_refs(value: Any, path: Path_ = ()) -> list[Ref]:
    """All references in ``value`` (strings, lists, dict values), in order.

    Raises :class:`ReferenceSyntaxError` at the first malformed one.
    """
    refs: list[Ref] = []
    for p, s in walk_strings(value, path):
        if "${" in s:
            refs.extend(part for part in parse_template(s, p) if isinstance(part, Ref))
    return refs


def to_text(value: Any) -> str:
    """How a value reads when interpolated into a longer string."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, dict | list | tuple):
        return json.dumps(value, separators=(",", ":"), sort_keys=False)
    return str(value)


def resolve(value: Any, lookup: Callable[[Ref], Any], path: Path_ = ()) -> Any:
    """``value`` with every reference replaced by ``lookup(ref)``.

    A string that is exactly one reference takes the looked-up value as it
    is (any type, including :data:`UNKNOWN`); references inside longer text
    are converted with :func:`to_text`, and if any of them is UNKNOWN the
    whole string is UNKNOWN. ``$${`` becomes ``${``. Dict keys are kept.
    """
    if isinstance(value, str):
        if "${" not in value:
            return value
        parts = parse_template(value, path)
        if len(parts) == 1 and isinstance(parts[0], Ref):
            return lookup(parts[0])
        out: list[str] = []
        for part in parts:
            if isinstance(part, str):
                out.append(part)
                continue
            got = lookup(part)
            if got is UNKNOWN:
                return UNKNOWN
            out.append(to_text(got))
        return "".join(out)
    if isinstance(value, dict):
        return {k: resolve(v, lookup, path + (k,)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [resolve(v, lookup, path + (i,)) for i, v in enumerate(value)]
    return value


def escape(value: Any) -> Any:
    """``value`` with every ``${`` in its strings written as ``$${``, so a
    literal (such as a variable's value) survives a later :func:`resolve`."""
    if isinstance(value, str):
        return value.replace("${", "$${")
    if isinstance(value, dict):
        return {k: escape(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [escape(v) for v in value]
    return value


def substitute(value: Any, lookup: Callable[[Ref], Any], path: Path_ = ()) -> Any:
    """Replace the references for which ``lookup`` does not return
    :data:`KEEP`; keep the others, and every escape, as template text.
    The loader uses it to put in ``${var.x}`` values.

    A whole-string reference takes the answer with its type; answers are
    :func:`escape`-d so their text is never read as a reference later.
    """
    if isinstance(value, str):
        if "${" not in value:
            return value
        parts = parse_template(value, path)
        if len(parts) == 1 and isinstance(parts[0], Ref):
            got = lookup(parts[0])
            return value if got is KEEP else escape(got)
        out: list[str] = []
        for part in parts:
            if isinstance(part, str):
                out.append(part.replace("${", "$${"))
                continue
            got = lookup(part)
            out.append(value[part.start : part.end] if got is KEEP else escape(to_text(got)))
        return "".join(out)
    if isinstance(value, dict):
        return {k: substitute(v, lookup, path + (k,)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [substitute(v, lookup, path + (i,)) for i, v in enumerate(value)]
    return value
