"""The container target's documentation names every target option it has."""

from __future__ import annotations

from pathlib import Path

from modelform.engine.registry import Registry

DOC = Path(__file__).resolve().parents[3] / "docs" / "providers" / "container.md"


def test_every_target_option_is_documented_and_described() -> None:
    schema = Registry().get("container").target_schema()
    text = DOC.read_text()
    for name, spec in schema["properties"].items():
        assert f"`{name}`" in text, name
        assert spec.get("description"), name
    assert schema["additionalProperties"] is False
    assert "### Carry the host CA into builds" in text
