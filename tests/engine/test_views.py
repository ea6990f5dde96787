"""The human view: the text of a plan, colours only on a terminal, one write."""

from __future__ import annotations

import io

import pytest

from modelform.engine.plan import Change, Mode, Plan
from modelform.engine.provider import Action
from modelform.engine.values import UNKNOWN
from modelform.engine.views import HumanView


class Terminal(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def isatty(self) -> bool:
        return True

    def write(self, s: str) -> int:
        self.writes += 1
        return super().write(s)


def change(name: str, action: Action, before: dict | None, after: dict | None, **kw) -> Change:  # type: ignore[type-arg]
    return Change(f"service.{name}", "service", name, "local", action, before, after, **kw)


PLAN = Plan(
    "p", Mode.NORMAL, None, 0,
    [
        change("a", Action.CREATE, None, {"port": 1, "url": UNKNOWN, "env": {"B": "2"}}),
        change("b", Action.UPDATE, {"x": "old", "n": 1}, {"x": "new", "n": 1}, changed=["x"],
               reasons=["model ridge: ridge:1 → ridge:2"]),
        change("c", Action.DELETE, {"port": 3}, None),
        change("d", Action.NOOP, {"port": 4}, {"port": 4}),
    ],
    [], {}, {},
)  # fmt: skip

TEXT = """
modelform will perform the following actions:

  # service.a will be created
  + service "a" {
      + env = {"B": "2"}
      + port = 1
      + url = (known after apply)
    }

  # service.b will be updated in place
  #   model ridge: ridge:1 → ridge:2
  ~ service "b" {
      ~ x = "old" → "new"
    }

  # service.c will be destroyed
  - service "c" {
      - port = 3
    }

Plan: 1 to add, 1 to change, 1 to destroy.
"""


def test_plan_text_without_a_terminal_has_no_codes() -> None:
    out = io.StringIO()
    HumanView(out, io.StringIO()).plan(PLAN)
    assert out.getvalue() == TEXT


def test_colours_on_a_terminal_in_one_write(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.delenv("CI", raising=False)  # a person's terminal (the suite runs with CI=true)
    monkeypatch.setenv("TERM", "xterm")
    out = Terminal()
    HumanView(out, io.StringIO()).plan(PLAN)
    text = out.getvalue()
    assert out.writes == 1
    assert '\x1b[32m  +\x1b[0m service "a" {' in text
    assert "      \x1b[33m~\x1b[0m x = " in text
    assert "\x1b[1mPlan:\x1b[0m 1 to add" in text
    plain = text
    for code in ("\x1b[0m", "\x1b[1m", "\x1b[2m", "\x1b[31m", "\x1b[32m", "\x1b[33m"):
        plain = plain.replace(code, "")
    assert plain == TEXT


@pytest.mark.parametrize(("var", "value"), [("NO_COLOR", "1"), ("TERM", "dumb")])
def test_no_colour_when_asked(monkeypatch: pytest.MonkeyPatch, var: str, value: str) -> None:
    monkeypatch.setenv(var, value)
    out = Terminal()
    HumanView(out, io.StringIO()).plan(PLAN)
    assert out.getvalue() == TEXT


def test_control_characters_dropped_and_tabs_expanded_past_codes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.delenv("CI", raising=False)  # a person's terminal (the suite runs with CI=true)
    monkeypatch.setenv("TERM", "xterm")
    err = Terminal()
    HumanView(io.StringIO(), err).error("bad\rly\x07 ab\tc\nnext", "a\tb")
    # Tab stops count what shows, not the colour codes; a style is closed at
    # each line end and opened again on the next line.
    assert err.getvalue() == ("\x1b[31mError: badly ab c\x1b[0m\n\x1b[31mnext\x1b[0m\na       b\n")


def test_no_colour_when_ci_is_set_even_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    for value, coloured in (("true", False), ("1", False), ("false", True), ("", True)):
        monkeypatch.setenv("CI", value)
        out = Terminal()
        HumanView(out, io.StringIO()).plan(PLAN)
        assert ("\x1b[" in out.getvalue()) is coloured, value
