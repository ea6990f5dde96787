"""Outputs in the state document (format 3): recorded, read back, checked,
and absent from a state that has none, which keeps the content it had."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from modelform.cli.statewriter import StateWriter
from modelform.state import FORMAT_VERSION, ResourceState, State, StateError
from modelform.state.local import LocalBackend

LINEAGE = "6f1c1e8a-3f5e-4d52-9a44-0b7c1d2e3f40"
URL = {"value": "http://127.0.0.1:8890", "type": "string", "sensitive": False}
KEY = {"value": "k-0123456789", "type": "string", "sensitive": True}


def doc(**extra: Any) -> dict[str, Any]:
    return {"format_version": 2, "lineage": LINEAGE, "serial": 3,
            "modelform_version": "0.1.0", "resources": [], **extra}  # fmt: skip


def test_outputs_round_trip_last_in_the_document() -> None:
    state = State.new(LINEAGE)
    state.outputs = {"url": URL, "key": KEY}
    data = state.to_json()
    assert list(data)[-1] == "outputs" and data["format_version"] == FORMAT_VERSION == 3
    back = State.loads(state.dumps())
    assert back.outputs == {"key": KEY, "url": URL}
    assert back.dumps() == state.dumps()
    assert '"k-0123456789"' in state.dumps()  # in clear, as the resources' secrets


def test_a_state_without_outputs_reads_and_keeps_its_content() -> None:
    old = State.from_json(doc())  # format 2: no outputs key
    assert old.outputs == {}
    assert "outputs" not in old.to_json()
    # the content digest a write is judged on is the one it had before outputs
    new = State.from_json({**doc(), "format_version": 3})
    assert old.content_digest() == new.content_digest()
    with_outputs = State.from_json({**doc(), "outputs": {"url": URL}})
    assert with_outputs.content_digest() != old.content_digest()


def test_outputs_are_kept_by_copies() -> None:
    state = State.new(LINEAGE)
    state.outputs = {"url": dict(URL)}
    rs = ResourceState("service.api", "service", "api", "local", {"port": 1})
    assert state.with_resources({rs.address: rs}).outputs == {"url": URL}
    copied = state.copy()
    copied.outputs["url"]["value"] = "changed"
    assert state.outputs["url"]["value"] == URL["value"]


@pytest.mark.parametrize(
    ("outputs", "message"),
    [
        ([], "outputs must be an object"),
        ({"url": "http://x"}, "outputs.url must be an object with a value"),
        ({"url": {"type": "string"}}, "outputs.url must be an object with a value"),
        ({"url": {**URL, "extra": 1}}, "outputs.url: unknown key(s) extra"),
        ({"url": {**URL, "sensitive": "no"}}, "outputs.url.sensitive must be true or false"),
        ({"url": {**URL, "type": 3}}, "outputs.url.type must be a string"),
    ],
)
def test_malformed_outputs_are_refused_naming_the_place(outputs: Any, message: str) -> None:
    with pytest.raises(StateError) as info:
        State.from_json(doc(outputs=outputs), "state.json")
    assert str(info.value) == f"state.json: malformed state: {message}"


def test_the_writer_records_the_outputs_it_is_given(tmp_path: Path) -> None:
    backend = LocalBackend(tmp_path / "state.json")
    prior = backend.write(State.from_json({**doc(), "outputs": {"url": URL}}))
    writer = StateWriter(backend, prior.lineage, prior)
    assert writer.outputs == {"url": URL}
    record = {
        "address": "service.api", "type": "service", "name": "api", "provider": "local",
        "attributes": {"port": 1}, "digests": {}, "dependencies": [], "status": None,
    }  # fmt: skip
    writer.submit({"service.api": record})
    writer.set_outputs({"key": KEY})
    stored = writer.flush()
    assert stored.outputs == {"key": KEY}
    again = backend.read()
    assert again is not None and again.outputs == {"key": KEY}
    assert again.resources["service.api"].attributes == {"port": 1}
