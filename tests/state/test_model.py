"""The state document: its text form, validation, and what counts as a change."""

from __future__ import annotations

import json
import re
from enum import Enum, IntEnum
from pathlib import Path
from typing import Any

import pytest

from modelform.state import (
    FORMAT_VERSION,
    NewerStateFormat,
    ResourceState,
    State,
    StateError,
    split_address,
)

LINEAGE = "6f1c1e8a-3f5e-4d52-9a44-0b7c1d2e3f40"
DOCS = Path(__file__).resolve().parents[2] / "docs" / "state.md"


def record(address: str, **attrs: Any) -> dict[str, Any]:
    """A resource as the engine's records have it (no timestamps)."""
    type_, name, _ = split_address(address)
    return {
        "address": address, "type": type_, "name": name, "provider": "local",
        "attributes": attrs, "digests": {}, "dependencies": [], "status": None,
    }  # fmt: skip


def test_the_text_is_deterministic_whatever_the_insertion_order() -> None:
    a, b = State.new(LINEAGE), State.new(LINEAGE)
    rs1 = ResourceState("service.b", "service", "b", "local", {"z": 1, "a": {"y": 2, "b": [3]}})
    rs2 = ResourceState("model.a", "model", "a", "core", digests={"y": "2", "x": "1"})
    for rs in (rs1, rs2):
        a.set_resource(rs, now="2026-01-01T00:00:00Z")
    for rs in (rs2, rs1):
        b.set_resource(rs, now="2026-01-01T00:00:00Z")
    b.resources["service.b"].attributes = {"a": {"b": [3], "y": 2}, "z": 1}
    text = a.dumps()
    assert text == b.dumps()
    assert text.endswith("}\n") and not text.endswith("\n\n")
    data = json.loads(text)
    assert list(data) == ["format_version", "lineage", "serial", "modelform_version", "resources"]
    assert [r["address"] for r in data["resources"]] == ["model.a", "service.b"]
    assert list(data["resources"][1]["attributes"]) == ["a", "z"]
    assert list(data["resources"][0]["digests"]) == ["x", "y"]
    assert '\n  "lineage"' in text and '\n      "address"' in text  # 2-space indent


def test_the_documented_example_is_a_valid_state_in_canonical_form() -> None:
    blocks = re.findall(r"```json\n(.*?)```", DOCS.read_text(), re.S)
    assert blocks, "docs/state.md shows an example state"
    state = State.loads(blocks[0], "docs example")
    assert state.dumps() == blocks[0]
    assert json.loads(blocks[0])["format_version"] == FORMAT_VERSION


def test_records_round_trip_through_resource_state() -> None:
    rec = record("service.api", url="http://127.0.0.1:8890", pid=7)
    rec["dependencies"] = ["model.ridge", "environment.sk", "model.ridge"]
    rs = ResourceState.from_json(rec)
    out = rs.to_json()
    assert out["dependencies"] == ["environment.sk", "model.ridge"]
    assert {k: v for k, v in out.items() if k not in ("created_at", "updated_at")} == {
        **rec, "dependencies": ["environment.sk", "model.ridge"],
        "tainted": False, "target": None, "sensitive": [],
    }  # fmt: skip
    out["attributes"]["pid"] = 8  # a fresh copy: the state is not aliased
    assert rs.attributes["pid"] == 7


def test_timestamps_survive_unchanged_content_and_move_on_change() -> None:
    prior = State.new(LINEAGE, {})
    prior.set_resource(
        ResourceState.from_json(record("service.api", pid=1)), "2026-01-01T00:00:00Z"
    )
    records = {a: r.to_json() for a, r in prior.resources.items()}
    same = prior.with_resources({a: ResourceState.from_json(r) for a, r in records.items()})
    assert same.same_content(prior) and same.get("service.api") == prior.get("service.api")
    records["service.api"]["attributes"]["pid"] = 2
    changed = prior.with_resources(
        {a: ResourceState.from_json(r) for a, r in records.items()}, now="2026-02-02T00:00:00Z"
    )
    rs = changed.get("service.api")
    assert rs is not None
    assert (rs.created_at, rs.updated_at) == ("2026-01-01T00:00:00Z", "2026-02-02T00:00:00Z")
    assert not changed.same_content(prior)


@pytest.mark.parametrize("a,b", [(1, 1.0), (1, True), (0, False), ("1", 1)])
def test_values_equal_in_python_but_not_in_json_are_a_change(a: Any, b: Any) -> None:
    s1 = State.new(LINEAGE, {"model.m": ResourceState("model.m", "model", "m", "core", {"v": a})})
    s2 = s1.copy()
    s2.resources["model.m"].attributes["v"] = b
    assert not s1.same_content(s2)


def doc(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "format_version": 1, "lineage": LINEAGE, "serial": 3, "modelform_version": "0.1.0",
        "resources": [record("service.api", pid=1)],
    }  # fmt: skip
    base.update(over)
    return base


@pytest.mark.parametrize(
    "data,fragment",
    [
        ([], "the document must be a JSON object"),
        (doc(format_version="1"), "format_version must be a positive integer"),
        (doc(format_version=0), "format_version must be a positive integer"),
        (doc(lineage=""), "lineage must be a non-empty string"),
        (doc(serial=-1), "serial must be a non-negative integer"),
        (doc(serial=True), "serial must be a non-negative integer"),
        (doc(resources={}), "resources must be a list"),
        (doc(extra=1), "unknown key(s) extra"),
        (doc(resources=[record("service.api"), record("service.api")]), "appears twice"),
        (doc(resources=[{**record("service.api"), "digests": {"a": 1}}]), "digests must be"),
        (doc(resources=[{**record("service.api"), "address": "api"}]), "invalid resource address"),
        (doc(resources=[{**record("service.api"), "provider": None}]), "provider must be"),
        (doc(resources=[{**record("service.api"), "status": 3}]), "status must be a string"),
        (doc(resources=[{**record("service.api"), "colour": "red"}]), "unknown key(s) colour"),
        (doc(resources=[[1]]), "resources[0]: must be an object, not a list"),
    ],
)
def test_malformed_documents_are_refused_naming_the_source(data: Any, fragment: str) -> None:
    with pytest.raises(StateError) as caught:
        State.loads(json.dumps(data), "/x/state.json")
    assert str(caught.value).startswith("/x/state.json: ")
    assert fragment in str(caught.value)
    assert caught.value.path == "/x/state.json"


@pytest.mark.parametrize(
    "text,fragment",
    [
        ('{"format_version": 1,', "not valid JSON: Expecting property name"),
        (b"\xff\xfe{}", "not UTF-8"),
        ("", "not valid JSON: Expecting value at line 1 column 1"),
    ],
)
def test_text_that_is_not_json_is_refused_naming_the_source(text: Any, fragment: str) -> None:
    with pytest.raises(StateError, match=re.escape(fragment)) as caught:
        State.loads(text, "/x/state.json")
    assert "/x/state.json" in str(caught.value)


def test_a_newer_format_is_refused_with_what_to_do() -> None:
    newer = {"format_version": FORMAT_VERSION + 1, "modelform_version": "9.0.0", "shape": "new"}
    with pytest.raises(StateError) as caught:
        State.loads(json.dumps(newer), "/x/state.json")
    msg = str(caught.value)
    assert f"state format {FORMAT_VERSION + 1} is newer" in msg
    assert "written by modelform 9.0.0" in msg and "upgrade modelform" in msg
    assert isinstance(caught.value, NewerStateFormat)


def test_values_json_cannot_hold_name_their_place() -> None:
    s = State.new(LINEAGE)
    bad = ResourceState("service.api", "service", "api", "local", {"a": {"b": [1, {2}]}})
    with pytest.raises(StateError, match=r"service.api: attributes.a.b\[1\]: .* type set"):
        s.set_resource(bad)  # refused as soon as it is recorded
    s.set_resource(ResourceState("service.api", "service", "api", "local", {}))
    s.resources["service.api"].attributes = {"a": {3: "x"}}  # changed behind its back
    with pytest.raises(StateError, match="attributes.a: key 3 is not a string"):
        s.dumps()
    s.resources["service.api"].attributes = {"big": 2**64}
    with pytest.raises(StateError, match="attributes.big: integer .* beyond the 64-bit range"):
        s.dumps()


def test_str_and_int_enums_are_stored_as_their_values() -> None:
    class Status(str, Enum):  # noqa: UP042 - the engine's ServiceStatus is this kind
        HEALTHY = "Healthy"

    class Level(IntEnum):
        HIGH = 3

    s = State.new(LINEAGE)
    s.set_resource(
        ResourceState("service.a", "service", "a", "local", {"s": Status.HEALTHY, "l": Level.HIGH})
    )
    assert json.loads(s.dumps())["resources"][0]["attributes"] == {"l": 3, "s": "Healthy"}


@pytest.mark.parametrize(
    "address,parts",
    [
        ("service.api", ("service", "api", "")),
        ("service.diabetes-prod/image", ("service", "diabetes-prod", "/image")),
        ("model.ridge_v2", ("model", "ridge_v2", "")),
    ],
)
def test_addresses_split(address: str, parts: tuple[str, str, str]) -> None:
    assert split_address(address) == parts


@pytest.mark.parametrize("address", ["api", "Service.api", "service.", "service.a b", ".x", ""])
def test_bad_addresses_are_refused(address: str) -> None:
    with pytest.raises(StateError, match="invalid resource address"):
        split_address(address)


def test_a_format_1_document_reads_as_untainted_resources_without_a_target() -> None:
    old = {
        "format_version": 1, "lineage": LINEAGE, "serial": 3, "modelform_version": "0.1.0",
        "resources": [{"address": "service.api", "type": "service", "name": "api",
                       "provider": "local", "attributes": {"port": 1}}],
    }  # fmt: skip
    state = State.from_json(old)
    rs = state.resources["service.api"]
    assert (rs.tainted, rs.target) == (False, None)
    data = state.to_json()
    assert data["format_version"] == FORMAT_VERSION == 3
    assert "outputs" not in data and state.outputs == {}
    assert data["resources"][0]["tainted"] is False and data["resources"][0]["target"] is None


def test_tainted_and_target_round_trip_and_are_checked() -> None:
    rs = ResourceState("service.api", "service", "api", "local", {"port": 1}, tainted=True,
                       target={"name": "laptop", "kind": "local"})  # fmt: skip
    back = ResourceState.from_json(rs.to_json())
    assert back.tainted is True and back.target == {"kind": "local", "name": "laptop"}
    with pytest.raises(StateError, match="tainted must be true or false"):
        ResourceState.from_json({**rs.to_json(), "tainted": "yes"})
    with pytest.raises(StateError, match="target must be an object or null"):
        ResourceState.from_json({**rs.to_json(), "target": "laptop"})
