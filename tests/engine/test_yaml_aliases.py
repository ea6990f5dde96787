"""YAML anchors and aliases: ordinary reuse works, expansion is bounded and
refused at the alias (the "billion laughs" file itself is the malformed case
64-billion-laughs, run by test_loader.py and through the CLI)."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelform.engine.diagnostics import DiagnosticError, Pos
from modelform.engine.loader import load
from modelform.engine.yaml_aliases import ALIAS_BUDGET
from modelform.engine.yaml_positions import parse

SHARED_ENV = """\
project: p
services:
  a:
    entry_script: s.py
    port: 9000
    env: &common
      OMP_NUM_THREADS: 1
      LOG_LEVEL: info
  b:
    entry_script: s.py
    port: 9001
    env: *common
  c:
    entry_script: s.py
    port: 9002
    env:
      <<: *common
      LOG_LEVEL: debug
"""


def test_a_shared_env_map_reused_by_two_services(tmp_path: Path) -> None:
    (tmp_path / "s.py").write_text("")
    (tmp_path / "modelform.yaml").write_text(SHARED_ENV)
    cfg = load(tmp_path / "modelform.yaml", environ={})
    common = {"OMP_NUM_THREADS": 1, "LOG_LEVEL": "info"}
    assert cfg.services["a"]["env"] == common
    assert cfg.services["b"]["env"] == common
    assert cfg.services["c"]["env"] == {"OMP_NUM_THREADS": 1, "LOG_LEVEL": "debug"}
    # two services, two maps: changing one cannot change the other
    assert cfg.services["a"]["env"] is not cfg.services["b"]["env"]
    f = str(tmp_path / "modelform.yaml")
    # a value made through an alias is placed where it was written, at the anchor
    assert cfg.pos(("services", "b", "env", "LOG_LEVEL")) == Pos(f, 8, 18)
    assert cfg.pos(("services", "c", "env", "OMP_NUM_THREADS")) == Pos(f, 7, 24)
    assert cfg.pos(("services", "c", "env", "LOG_LEVEL")) == Pos(f, 18, 18)


def test_aliases_may_make_up_to_the_budget() -> None:
    # one anchored list of 99 values plus itself, used as often as the budget allows
    uses = ALIAS_BUDGET // 100
    text = "a: &a [" + ", ".join(["x"] * 99) + "]\nb: [" + ", ".join(["*a"] * uses) + "]\n"
    data = parse(text, "f.yaml").data
    assert len(data["b"]) == uses and all(item == ["x"] * 99 for item in data["b"])


def test_one_alias_past_the_budget_is_refused_at_the_alias() -> None:
    big = "[" + ", ".join(["x"] * ALIAS_BUDGET) + "]"
    text = f"a: &big {big}\nb:\n  - 1\n  - *big\n"
    with pytest.raises(DiagnosticError) as info:
        parse(text, "f.yaml")
    assert len(info.value.diagnostics) == 1
    first = info.value.diagnostics[0]
    assert first.pos == Pos("f.yaml", 4, 5)
    assert first.message == f"alias *big expands to more than {ALIAS_BUDGET} values"
    assert first.hint is not None and "nested" in first.hint


def test_many_small_aliases_past_the_budget_are_refused_where_it_runs_out() -> None:
    # 100 values each: the budget runs out at use number ALIAS_BUDGET // 100 + 1
    uses = ALIAS_BUDGET // 100 + 1
    line = "b: [" + ", ".join(["*a"] * uses) + "]\n"
    text = "a: &a [" + ", ".join(["x"] * 99) + "]\n" + line
    with pytest.raises(DiagnosticError) as info:
        parse(text, "f.yaml")
    first = info.value.diagnostics[0]
    assert first.pos == Pos("f.yaml", 2, line.rindex("*a") + 1)
    assert first.message.startswith("alias *a makes the aliases in this file expand to more than")


@pytest.mark.timeout(60)  # unbounded, this would never finish: 9^9 values
def test_billion_laughs_stops_at_the_budget() -> None:
    levels = "abcdefghi"
    lines = ["a: &a [" + ", ".join(["lol"] * 9) + "]"]
    for prev, name in zip(levels, levels[1:], strict=False):
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 9) + "]")
    with pytest.raises(DiagnosticError, match="more than"):
        parse("\n".join(lines) + "\n", "f.yaml")


def test_recursive_alias_is_still_its_own_error() -> None:
    with pytest.raises(DiagnosticError, match="refers to itself") as info:
        parse("models: &m\n  ridge: *m\n", "f.yaml")
    assert info.value.diagnostics[0].pos == Pos("f.yaml", 1, 9)
