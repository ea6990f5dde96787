"""Route conditions: the ``WHERE`` part of an IoT Hub route, the subset the local hub runs.

Grammar (keywords case-insensitive, as IoT Hub's routing query language)::

    expr    := and ("OR" and)*
    and     := not ("AND" not)*
    not     := "NOT" not | compare
    compare := operand (("=" | "!=" | "<>" | "<" | ">" | "<=" | ">=") operand)?
    operand := 'text' | "text" | number | true | false | null
             | name ("." name)* | IS_DEFINED(operand) | (expr)

A bare name is an application (custom) property; ``$contentType``,
``$contentEncoding``, ``$correlationId``, ``$messageId``, ``$userId``,
``$connectionDeviceId``, ``$connectionModuleId`` and ``$outputName`` are the
message's system properties; ``$body.a.b`` reads a JSON body (UTF-8, as IoT
Hub requires ``contentType`` application/json for body queries; here any
body that parses as JSON is read). Application properties are strings; a
string compared with a number is compared as a number when it parses as
one. A comparison with an undefined value is false, as IoT Hub's
``undefined``. Anything outside this subset is a ``ConditionError`` when
the manifest is loaded, never a silent mismatch at run time.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson


class ConditionError(ValueError):
    """A condition the hub cannot run; one line for the user."""


class _Undefined:
    def __repr__(self) -> str:
        return "undefined"


UNDEFINED: Any = _Undefined()

SYSTEM_PROPERTIES = {
    "$contenttype": "content_type",
    "$contentencoding": "content_encoding",
    "$correlationid": "correlation_id",
    "$messageid": "message_id",
    "$userid": "user_id",
    "$connectiondeviceid": "device",
    "$connectionmoduleid": "module",
    "$outputname": "output",
}


@dataclass(frozen=True)
class MessageView:
    """What a condition reads of a message (the router builds one per evaluation)."""

    properties: Mapping[str, str]
    system: Mapping[str, str | None]
    body: bytes

    def body_json(self) -> Any:
        try:
            return orjson.loads(self.body)
        except orjson.JSONDecodeError:
            return UNDEFINED


Evaluator = Callable[[MessageView], Any]

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>'(?:[^']|'')*'|"(?:[^"\\]|\\.)*")
      | (?P<number>-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)
      | (?P<op><=|>=|<>|!=|=|<|>|\(|\)|,)
      | (?P<name>\$?[A-Za-z_][A-Za-z0-9_\-]*(?:\.[A-Za-z_$][A-Za-z0-9_\-]*)*)
    )""",
    re.VERBOSE,
)


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    position = 0
    text = text.rstrip()
    while position < len(text):
        found = _TOKEN.match(text, position)
        if found is None or found.end() == position:
            raise ConditionError(f"cannot read the condition at {text[position:][:20]!r}")
        kind = found.lastgroup or ""
        out.append((kind, found.group(kind)))
        position = found.end()
    return out


def compile_condition(text: str) -> Evaluator:
    """Compile a ``WHERE`` condition into a function of a message that returns True/False."""
    parser = _Parser(_tokens(text), text)
    evaluate = parser.expression()
    if parser.position != len(parser.tokens):
        raise ConditionError(f"unexpected {parser.tokens[parser.position][1]!r} in the condition")

    def condition(message: MessageView) -> bool:
        return evaluate(message) is True

    return condition


class _Parser:
    def __init__(self, tokens: list[tuple[str, str]], text: str) -> None:
        self.tokens = tokens
        self.text = text
        self.position = 0

    def _peek(self) -> tuple[str, str] | None:
        return self.tokens[self.position] if self.position < len(self.tokens) else None

    def _keyword(self, word: str) -> bool:
        token = self._peek()
        if token and token[0] == "name" and token[1].upper() == word:
            self.position += 1
            return True
        return False

    def _op(self, op: str) -> bool:
        token = self._peek()
        if token and token[0] == "op" and token[1] == op:
            self.position += 1
            return True
        return False

    def expression(self) -> Evaluator:
        left = self._and()
        while self._keyword("OR"):
            right = self._and()
            left = _or(left, right)
        return left

    def _and(self) -> Evaluator:
        left = self._not()
        while self._keyword("AND"):
            right = self._not()
            left = _and(left, right)
        return left

    def _not(self) -> Evaluator:
        if self._keyword("NOT"):
            inner = self._not()
            return lambda m: (not value) if isinstance(value := inner(m), bool) else UNDEFINED
        return self._compare()

    def _compare(self) -> Evaluator:
        left = self._operand()
        token = self._peek()
        if token and token[0] == "op" and token[1] in _COMPARE:
            self.position += 1
            right = self._operand()
            return _comparison(token[1], left, right)
        return left

    def _operand(self) -> Evaluator:
        token = self._peek()
        if token is None:
            raise ConditionError("the condition ends too early")
        kind, text = token
        self.position += 1
        if kind == "string":
            value = text[1:-1].replace("''", "'") if text[0] == "'" else orjson.loads(text)
            return lambda m: value
        if kind == "number":
            number = float(text) if any(c in text for c in ".eE") else int(text)
            return lambda m: number
        if kind == "op" and text == "(":
            inner = self.expression()
            if not self._op(")"):
                raise ConditionError("a '(' in the condition is not closed")
            return inner
        if kind == "name":
            upper = text.upper()
            if upper in ("TRUE", "FALSE"):
                flag = upper == "TRUE"
                return lambda m: flag
            if upper == "NULL":
                return lambda m: None
            if self._op("("):
                return self._function(upper, text)
            return _reference(text)
        raise ConditionError(f"unexpected {text!r} in the condition")

    def _function(self, upper: str, text: str) -> Evaluator:
        if upper != "IS_DEFINED":
            raise ConditionError(f"function {text}() is not supported by the local edge hub")
        inner = self._operand()
        if not self._op(")"):
            raise ConditionError(f"{text}( takes one argument")
        return lambda m: inner(m) is not UNDEFINED


_COMPARE = {"=", "!=", "<>", "<", ">", "<=", ">="}


def _or(left: Evaluator, right: Evaluator) -> Evaluator:
    return lambda m: left(m) is True or right(m) is True


def _and(left: Evaluator, right: Evaluator) -> Evaluator:
    return lambda m: left(m) is True and right(m) is True


def _reference(text: str) -> Evaluator:
    lowered = text.lower()
    if lowered == "$body" or lowered.startswith("$body."):
        path = text.split(".")[1:]

        def body(message: MessageView) -> Any:
            value = message.body_json()
            for part in path:
                if not isinstance(value, dict) or part not in value:
                    return UNDEFINED
                value = value[part]
            return value

        return body
    if text.startswith("$"):
        field = SYSTEM_PROPERTIES.get(lowered)
        if field is None:
            raise ConditionError(f"unknown system property {text} in the condition")

        def system(message: MessageView) -> Any:
            value = message.system.get(field)
            return UNDEFINED if value is None else value

        return system
    return lambda m: m.properties.get(text, UNDEFINED)


def _comparison(op: str, left: Evaluator, right: Evaluator) -> Evaluator:
    def compare(message: MessageView) -> Any:
        a, b = _coerce(left(message), right(message))
        if a is UNDEFINED or b is UNDEFINED:
            return UNDEFINED
        try:
            if op == "=":
                return bool(a == b)
            if op in ("!=", "<>"):
                return bool(a != b)
            if op == "<":
                return bool(a < b)
            if op == ">":
                return bool(a > b)
            if op == "<=":
                return bool(a <= b)
            return bool(a >= b)
        except TypeError:
            return UNDEFINED

    return compare


def _coerce(a: Any, b: Any) -> tuple[Any, Any]:
    """A string property against a number compares as a number when it reads as one."""
    if isinstance(a, str) and isinstance(b, int | float) and not isinstance(b, bool):
        return _number(a), b
    if isinstance(b, str) and isinstance(a, int | float) and not isinstance(a, bool):
        return a, _number(b)
    return a, b


def _number(text: str) -> Any:
    try:
        return float(text)
    except ValueError:
        return UNDEFINED
