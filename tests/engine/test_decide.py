from __future__ import annotations

from modelform.engine.decide import decide
from modelform.engine.provider import Action, Proposal
from modelform.engine.values import UNKNOWN


def test_create_when_nothing_before() -> None:
    assert decide(None, Proposal({"port": 1}))[0] is Action.CREATE


def test_noop_when_equal_and_unknown_computed_values_are_not_changes() -> None:
    action, changed, _ = decide({"port": 1, "pid": 7}, Proposal({"port": 1, "pid": UNKNOWN}))
    assert action is Action.NOOP and changed == []


def test_update_in_place_with_reason() -> None:
    p = Proposal({"port": 1, "env": {"A": "2"}}, requires_replace={"port"})
    action, changed, reasons = decide({"port": 1, "env": {"A": "1"}}, p)
    assert action is Action.UPDATE
    assert changed == ["env"]
    assert reasons == ['env: {"A": "1"} → {"A": "2"}']


def test_replace_when_a_forcing_key_changes() -> None:
    p = Proposal({"port": 2}, requires_replace={"port"})
    action, _, reasons = decide({"port": 1}, p)
    assert action is Action.REPLACE
    assert "port forces replacement" in reasons[0]


def test_provider_reason_wins_and_partly_unknown_counts_as_change() -> None:
    p = Proposal({"cfg": {"url": UNKNOWN}}, reasons={"cfg": "upstream changes"})
    action, changed, reasons = decide({"cfg": {"url": "x"}}, p)
    assert (action, changed, reasons) == (Action.UPDATE, ["cfg"], ["upstream changes"])


def test_forced_replace() -> None:
    action, _, reasons = decide({"port": 1}, Proposal({"port": 1}), force_replace=True)
    assert action is Action.REPLACE and reasons[-1].startswith("replacement requested")
