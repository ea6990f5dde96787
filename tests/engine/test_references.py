"""``${...}`` references: parsing, finding, resolving, substituting."""

from __future__ import annotations

from typing import Any

import pytest

from modelform.engine.references import (
    KEEP,
    Ref,
    ReferenceSyntaxError,
    escape,
    find_refs,
    parse_template,
    resolve,
    substitute,
)
from modelform.engine.values import UNKNOWN


def test_find_refs_in_nested_values() -> None:
    body = {
        "models": ["ridge"],
        "env": {"URL": "${services.api.url}/x", "V": "${models.ridge.version}"},
        "list": [1, "a ${var.n} b ${environments.py-3.digest}"],
        "key ${var.ignored}": "keys are not templates",
    }
    refs = find_refs(body)
    assert [(r.section, r.name, r.attr, r.path) for r in refs] == [
        ("services", "api", "url", ("env", "URL")),
        ("models", "ridge", "version", ("env", "V")),
        ("var", "n", None, ("list", 1)),
        ("environments", "py-3", "digest", ("list", 1)),
    ]
    assert [r.address for r in refs] == ["service.api", "model.ridge", None, "environment.py-3"]
    assert refs[2].start == 2 and refs[2].end == 10
    assert find_refs(body, ("services", "x"))[0].path == ("services", "x", "env", "URL")


def test_find_refs_none() -> None:
    assert find_refs({"a": "plain", "b": 3, "c": None, "d": "$${escaped}"}) == []


def test_targets_reference_and_spaces() -> None:
    (ref,) = find_refs("${ targets.prod.namespace }")
    assert ref == Ref("targets", "prod", "namespace", (), 0, 27)
    assert ref.text == "${targets.prod.namespace}"


@pytest.mark.parametrize(
    ("text", "message", "offset"),
    [
        ("${models.}", "malformed reference", 0),
        ("x ${models.ridge}", "expected ${models.NAME.ATTRIBUTE}", 2),
        ("${models.Ridge.version}", "malformed reference", 0),
        ("${var}", "expected ${var.NAME}", 0),
        ("${var.a.b}", "expected ${var.NAME}", 0),
        ("${}", "empty reference", 0),
        ("ab ${var.x", 'unclosed "${"', 3),
        ("${model.ridge.version}", 'did you mean "models"', 0),
        ("${data.x.y}", '"data" is not one of', 0),
        ("${services.api.url.host}", "malformed reference", 0),
    ],
)
def test_malformed(text: str, message: str, offset: int) -> None:
    with pytest.raises(ReferenceSyntaxError) as info:
        parse_template(text, ("p",))
    assert message in info.value.message
    assert info.value.offset == offset
    assert info.value.path == ("p",)


def test_escape_is_literal() -> None:
    assert parse_template("a $${b} c") == ["a ${b} c"]
    assert parse_template("$${var.x}${var.y}") == ["${var.x}", Ref("var", "y", None, (), 9, 17)]
    assert resolve("$${var.x}", lambda r: pytest.fail("no lookup")) == "${var.x}"


def lookup(values: dict[str, Any]) -> Any:
    def get(ref: Ref) -> Any:
        return values[f"{ref.section}.{ref.name}" + (f".{ref.attr}" if ref.attr else "")]

    return get


def test_whole_string_keeps_type() -> None:
    get = lookup({"var.n": 3, "var.l": [1, 2], "models.m.version": {"a": 1}, "var.none": None})
    assert resolve("${var.n}", get) == 3
    assert resolve({"x": ["${var.l}"]}, get) == {"x": [[1, 2]]}
    assert resolve("${models.m.version}", get) == {"a": 1}
    assert resolve("${var.none}", get) is None


def test_interpolation_is_text() -> None:
    get = lookup({"var.n": 3, "var.b": True, "var.f": 2.0, "var.l": [1, "a"], "var.none": None})
    assert resolve("n=${var.n} b=${var.b} f=${var.f}", get) == "n=3 b=true f=2"
    assert resolve("${var.l}!", get) == '[1,"a"]!'
    assert resolve("[${var.none}]", get) == "[]"
    assert resolve("${var.n}${var.n}", get) == "33"


def test_unknown_propagates() -> None:
    get = lookup({"services.a.url": UNKNOWN, "var.n": 1})
    assert resolve("${services.a.url}", get) is UNKNOWN
    assert resolve("http://${services.a.url}/x", get) is UNKNOWN
    assert resolve({"u": "${services.a.url}", "n": "${var.n}"}, get) == {"u": UNKNOWN, "n": 1}


def test_substitute_keeps_what_lookup_leaves() -> None:
    def only_vars(ref: Ref) -> Any:
        return (
            {"x": "X", "l": [1], "t": "${models.m.v}"}[ref.name] if ref.section == "var" else KEEP
        )

    value = {
        "a": "${var.x}-${services.s.url}-$${lit}",
        "b": "${services.s.url}",
        "c": "${var.l}",
        "d": "${var.t}",
        "e": "pre ${var.t}",
    }
    out = substitute(value, only_vars)
    assert out == {
        "a": "X-${services.s.url}-$${lit}",
        "b": "${services.s.url}",
        "c": [1],
        "d": "$${models.m.v}",
        "e": "pre $${models.m.v}",
    }
    final = resolve(out, lambda r: "URL")
    assert final == {
        "a": "X-URL-${lit}",
        "b": "URL",
        "c": [1],
        "d": "${models.m.v}",
        "e": "pre ${models.m.v}",
    }


def test_escape_deep() -> None:
    assert escape({"a": ["${x}", 1], "b": "no"}) == {"a": ["$${x}", 1], "b": "no"}
