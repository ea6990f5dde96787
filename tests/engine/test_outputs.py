"""Outputs: how the loader reads them, what makes one sensitive, what a plan
says about them, and their places in the plan document and in fmt."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from modelform.engine.config import Config
from modelform.engine.diagnostics import DiagnosticError, Pos
from modelform.engine.fmt import format_text
from modelform.engine.loader import load
from modelform.engine.outputs import MASK, OutputChange, diff, listing, plan_text, value_type
from modelform.engine.outputs_eval import after_apply, evaluate, final
from modelform.engine.plan import Mode, Plan
from modelform.engine.planjson import plan_from_json, plan_json
from modelform.engine.provider import Action
from modelform.engine.registry import Registry, catalog
from modelform.engine.sensitive import Redactor, from_config
from modelform.engine.values import UNKNOWN

HEAD = """\
project: demo
variables:
  port: {default: 8890}
  token: {default: s3cr3t-token-value, sensitive: true}
  short: {default: "7", sensitive: true}
models:
  ridge: {path: m.pkl}
services:
  api:
    models: [ridge]
    entry_script: score.py
    port: ${var.port}
    env: {TOKEN: "${var.token}", MODE: fast}
"""


@pytest.fixture(scope="module")
def kinds() -> Any:
    return catalog(Registry())


def project(tmp_path: Path, outputs: str) -> Path:
    (tmp_path / "m.pkl").write_bytes(b"model")
    (tmp_path / "score.py").write_text("def init():\n    pass\n\ndef run(data):\n    return data\n")
    f = tmp_path / "modelform.yaml"
    f.write_text(HEAD + outputs)
    return f


def load_outputs(tmp_path: Path, outputs: str, kinds: Any) -> Config:
    return load(project(tmp_path, outputs), catalog=kinds)


def first_error(tmp_path: Path, outputs: str, kinds: Any) -> tuple[str, Pos | None, str | None]:
    with pytest.raises(DiagnosticError) as info:
        load_outputs(tmp_path, outputs, kinds)
    d = info.value.diagnostics[0]
    return d.message, d.pos, d.hint


# -- the loader ----------------------------------------------------------------

LINE = HEAD.count("\n") + 2  # the first line under "outputs:"


def test_short_and_long_forms_read_alike(tmp_path: Path, kinds: Any) -> None:
    cfg = load_outputs(
        tmp_path,
        "outputs:\n"
        "  url: ${services.api.url}\n"
        "  port:\n"
        "    value: ${var.port}\n"
        "    description: the port\n"
        "  secret: {value: '${var.token}', sensitive: true}\n"
        "  list: {value: [1, '${services.api.port}']}\n",
        kinds,
    )
    out = cfg.outputs
    assert list(out) == ["url", "port", "secret", "list"]
    assert (out["url"].value, out["url"].sensitive, out["url"].vars) == (
        "${services.api.url}", False, (),
    )  # fmt: skip
    # ${var.x} is put in by the loader; the output remembers which it used
    assert (out["port"].value, out["port"].description, out["port"].vars) == (
        8890, "the port", ("port",),
    )  # fmt: skip
    assert out["secret"].sensitive and out["secret"].vars == ("token",)
    assert out["list"].value == [1, "${services.api.port}"]


def test_no_outputs_section_is_no_outputs(tmp_path: Path, kinds: Any) -> None:
    assert load_outputs(tmp_path, "", kinds).outputs == {}
    assert load_outputs(tmp_path, "outputs:\n", kinds).outputs == {}


def test_an_unknown_resource_is_a_diagnostic_at_its_place(tmp_path: Path, kinds: Any) -> None:
    msg, pos, _ = first_error(tmp_path, "outputs:\n  url: ${services.apj.url}\n", kinds)
    assert msg == 'unknown service "apj" in ${services.apj.url} (did you mean "api"?)'
    assert pos is not None and (pos.line, pos.col) == (LINE, 8)


def test_an_unknown_attribute_is_a_diagnostic_with_did_you_mean(tmp_path: Path, kinds: Any) -> None:
    msg, pos, hint = first_error(
        tmp_path, "outputs:\n  url:\n    value: 'at ${services.api.utl}'\n", kinds
    )
    assert msg == (
        "services.api has no attribute 'utl' in ${services.api.utl} (did you mean \"url\"?)"
    )
    assert pos is not None and (pos.line, pos.col) == (LINE + 1, 16)
    assert hint is not None and "url" in hint


def test_an_undeclared_variable_is_a_diagnostic(tmp_path: Path, kinds: Any) -> None:
    msg, pos, _ = first_error(tmp_path, "outputs:\n  p: ${var.prot}\n", kinds)
    assert msg == 'undeclared variable "prot" in ${var.prot} (did you mean "port"?)'
    assert pos is not None and (pos.line, pos.col) == (LINE, 6)


def test_the_long_form_needs_a_value_and_no_other_keys(tmp_path: Path, kinds: Any) -> None:
    msg, pos, _ = first_error(tmp_path, "outputs:\n  url: {description: x}\n", kinds)
    assert msg == 'outputs.url: missing required key "value"'
    assert pos is not None and pos.line == LINE
    msg, _, _ = first_error(tmp_path, "outputs:\n  url: {value: x, sensitve: true}\n", kinds)
    assert 'unknown key "sensitve"' in msg and 'did you mean "sensitive"' in msg


def test_a_short_form_is_any_value_but_a_mapping(tmp_path: Path, kinds: Any) -> None:
    cfg = load_outputs(
        tmp_path,
        "outputs:\n  n: 3\n  l: [a, '${services.api.port}']\n  b: true\n"
        "  v: ${var.port}\n  m: {value: {a: 1}}\n",
        kinds,
    )
    assert {n: o.value for n, o in cfg.outputs.items()} == {
        "n": 3, "l": ["a", "${services.api.port}"], "b": True, "v": 8890, "m": {"a": 1},
    }  # fmt: skip
    msg, pos, _ = first_error(tmp_path, "outputs:\n  n:\n", kinds)
    assert msg.startswith("outputs.n:") and pos is not None and pos.line == LINE


def test_a_variable_holding_a_map_is_a_short_forms_value(tmp_path: Path, kinds: Any) -> None:
    f = project(tmp_path, "outputs:\n  m: ${var.m}\n")
    f.write_text(f.read_text().replace("variables:\n", "variables:\n  m: {default: {value: 1}}\n"))
    assert load(f, catalog=kinds).outputs["m"].value == {"value": 1}


def test_a_short_forms_list_points_at_the_right_item(tmp_path: Path, kinds: Any) -> None:
    msg, pos, _ = first_error(tmp_path, "outputs:\n  l: [a, '${services.api.prot}']\n", kinds)
    assert "has no attribute 'prot'" in msg
    assert pos is not None and (pos.line, pos.col) == (LINE, 11)


def test_a_description_holds_no_reference(tmp_path: Path, kinds: Any) -> None:
    msg, pos, _ = first_error(
        tmp_path, "outputs:\n  u: {value: x, description: 'the ${services.api.url}'}\n", kinds
    )
    assert msg == "outputs.u.description: a description cannot use references"
    assert pos is not None and pos.line == LINE


def test_output_names_are_identifiers(tmp_path: Path, kinds: Any) -> None:
    msg, _, _ = first_error(tmp_path, "outputs:\n  9lives: x\n", kinds)
    assert "9lives" in msg


# -- values and sensitivity ----------------------------------------------------

ATTRS = {
    "service.api": {
        "url": "http://127.0.0.1:8890",
        "port": 8890,
        "key": "k-0123456789",
        "host": "pw-abcdef",
        "env": {"TOKEN": "s3cr3t-token-value", "MODE": "fast"},
    },
    "model.ridge": {"version": 2},
}


def evaluated(tmp_path: Path, kinds: Any, outputs: str, **kw: Any) -> dict[str, tuple[Any, bool]]:
    cfg = load_outputs(tmp_path, outputs, kinds)
    secrets = from_config(cfg, kinds)
    return evaluate(cfg, kw.get("attrs", ATTRS), kw.get("keys", {}), secrets)


def test_values_resolve_from_attributes(tmp_path: Path, kinds: Any) -> None:
    got = evaluated(
        tmp_path, kinds,
        "outputs:\n  url: ${services.api.url}\n"
        "  both: 'v${models.ridge.version} at ${services.api.url}'\n"
        "  map: {value: {port: '${services.api.port}', mode: fast}}\n",
    )  # fmt: skip
    assert got == {
        "both": ("v2 at http://127.0.0.1:8890", False),
        "map": ({"port": 8890, "mode": "fast"}, False),
        "url": ("http://127.0.0.1:8890", False),
    }


def test_a_resource_not_yet_known_gives_an_unknown_value(tmp_path: Path, kinds: Any) -> None:
    got = evaluated(
        tmp_path, kinds, "outputs:\n  url: ${services.api.url}\n  v: 'v${models.ridge.version}'\n",
        attrs={"service.api": {"url": UNKNOWN}},
    )  # fmt: skip
    assert got == {"url": (UNKNOWN, False), "v": (UNKNOWN, False)}


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("${var.token}", "a sensitive variable"),
        ("'x-${var.short}'", "a sensitive variable too short to be masked inside text"),
        ("${services.api.key}", "the key attribute, secret everywhere"),
        ("${services.api.host}", "an attribute the provider marked sensitive"),
        ("${services.api.env}", "a value holding a secret's value"),
        ("'Bearer ${services.api.env}'", "text holding a secret's value"),
        ("{value: '${services.api.url}', sensitive: true}", "marked"),
    ],
)
def test_an_output_derived_from_a_secret_is_sensitive(
    tmp_path: Path, kinds: Any, value: str, why: str
) -> None:
    got = evaluated(
        tmp_path, kinds, f"outputs:\n  o: {value}\n",
        keys={"service.api": {"host"}},
    )  # fmt: skip
    assert got["o"][1] is True, why


def test_plain_outputs_are_not_sensitive(tmp_path: Path, kinds: Any) -> None:
    got = evaluated(
        tmp_path, kinds,
        "outputs:\n  url: ${services.api.url}\n  mode: '${services.api.port}-fast'\n"
        "  p: ${var.port}\n",
        keys={"service.api": {"host"}},
    )  # fmt: skip
    assert {n: s for n, (_, s) in got.items()} == {"mode": False, "p": False, "url": False}


def test_after_apply_records_known_values_and_names_unknown_ones(
    tmp_path: Path, kinds: Any
) -> None:
    cfg = load_outputs(
        tmp_path,
        "outputs:\n  url: ${services.api.url}\n  key: ${services.api.key}\n"
        "  v: ${models.ridge.version}\n",
        kinds,
    )
    records = {
        "service.api": {"attributes": {"url": "http://x", "key": "k-0123456789"}, "sensitive": []},
    }
    done, unknown = after_apply(cfg, records, Redactor())
    assert done == {
        "key": {"value": "k-0123456789", "type": "string", "sensitive": True},
        "url": {"value": "http://x", "type": "string", "sensitive": False},
    }
    assert unknown == ["v"]


def test_destroy_removes_what_its_plan_removes_and_refresh_only_keeps_all(
    tmp_path: Path, kinds: Any
) -> None:
    cfg = load_outputs(tmp_path, "outputs:\n  url: ${services.api.url}\n", kinds)
    prior = {
        "url": {"value": "http://x", "type": "string", "sensitive": False},
        "c": {"value": 1, "type": "number", "sensitive": False},
    }
    plan = Plan("demo", Mode.DESTROY, None, 0, [], [], {}, {})
    plan.outputs = [OutputChange("url", Action.DELETE, "http://x", None)]
    assert final(cfg, plan, {}, prior, Redactor()) == ({"c": prior["c"]}, [])
    plan.mode = Mode.REFRESH_ONLY
    assert final(cfg, plan, {}, prior, Redactor()) == (prior, [])


# -- changes -------------------------------------------------------------------


def test_diff_names_each_action() -> None:
    prior = {
        "same": {"value": 1, "sensitive": False},
        "moved": {"value": "a", "sensitive": False},
        "gone": {"value": "g", "sensitive": True},
        "later": {"value": "l", "sensitive": False},
        "hidden": {"value": "h", "sensitive": False},
    }
    planned = {
        "same": (1, False), "moved": ("b", False), "new": (UNKNOWN, False),
        "later": (UNKNOWN, False), "hidden": ("h", True),
    }  # fmt: skip
    got = {c.name: (c.action, c.before, c.after, c.sensitive) for c in diff(prior, planned)}
    assert got == {
        "gone": (Action.DELETE, "g", None, True),
        "hidden": (Action.UPDATE, "h", "h", True),
        "later": (Action.UPDATE, "l", UNKNOWN, False),
        "moved": (Action.UPDATE, "a", "b", False),
        "new": (Action.CREATE, None, UNKNOWN, False),
        "same": (Action.NOOP, 1, 1, False),
    }


def test_plan_text_masks_sensitive_values_and_leaves_no_ops_out() -> None:
    changes = [
        OutputChange("a", Action.CREATE, None, "http://x"),
        OutputChange("b", Action.UPDATE, "s3cr3t", "0th3r", sensitive=True),
        OutputChange("c", Action.CREATE, None, UNKNOWN),
        OutputChange("d", Action.DELETE, 5, None),
        OutputChange("e", Action.NOOP, 1, 1),
    ]
    assert plan_text(changes, {}) == (
        "\nChanges to Outputs:\n"
        '  + a = "http://x"\n'
        f"  ~ b = {MASK} → {MASK}\n"
        "  + c = (known after apply)\n"
        "  - d = 5 → null\n"
    )
    assert plan_text(changes[4:], {}) == ""


def test_listing_masks_sensitive_values() -> None:
    recorded = {
        "url": {"value": "http://x", "type": "string", "sensitive": False},
        "key": {"value": "k-0123456789", "type": "string", "sensitive": True},
    }
    assert listing(recorded) == f'key = {MASK}\nurl = "http://x"\n'


def test_value_types() -> None:
    assert [value_type(v) for v in ("a", 1, 1.5, True, [1], {"a": 1}, None)] == [
        "string", "number", "number", "bool", "list", "map", "null",
    ]  # fmt: skip


def test_the_plan_document_carries_output_changes_masked_and_a_plan_file_keeps_them() -> None:
    plan = Plan("demo", Mode.NORMAL, "l", 3, [], [], {}, {})
    plan.outputs = [
        OutputChange("url", Action.CREATE, None, UNKNOWN),
        OutputChange("key", Action.UPDATE, "old-secret", "new-secret", sensitive=True),
    ]
    doc = plan_json(plan)
    assert doc["format_version"] == 2 and doc["has_changes"] is True
    assert doc["output_changes"] == [
        {"name": "url", "action": "create", "sensitive": False, "before": None,
         "after": {"__unknown__": True}},
        {"name": "key", "action": "update", "sensitive": True, "before": MASK, "after": MASK},
    ]  # fmt: skip
    back = plan_from_json(plan_json(plan, mask=False))
    assert back.outputs == plan.outputs
    # a plan file written before outputs existed reads as one without output changes
    old = plan_json(plan, mask=False)
    del old["output_changes"]
    assert plan_from_json(old).outputs == []


def test_a_plan_whose_only_changes_are_outputs_has_changes() -> None:
    plan = Plan("demo", Mode.NORMAL, "l", 3, [], [], {}, {})
    plan.outputs = [OutputChange("same", Action.NOOP, 1, 1)]
    assert not plan.has_changes
    plan.outputs.append(OutputChange("url", Action.CREATE, None, "x"))
    assert plan.has_changes and [o.name for o in plan.output_changes] == ["url"]


# -- fmt -----------------------------------------------------------------------


def test_fmt_keeps_both_forms_and_puts_outputs_last() -> None:
    text = (
        "outputs:\n"
        "    url: ${services.api.url}\n"
        "    key:\n"
        "        value: ${services.api.key}\n"
        "        sensitive: true\n"
        "project: demo\n"
        "services: {}\n"
    )
    want = (
        "project: demo\n"
        "services: {}\n"
        "\n"
        "outputs:\n"
        "  url: ${services.api.url}\n"
        "  key:\n"
        "    value: ${services.api.key}\n"
        "    sensitive: true\n"
    )
    assert format_text(text, "modelform.yaml") == want
    assert format_text(want, "modelform.yaml") == want
