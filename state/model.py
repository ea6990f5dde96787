"""The state: what modelform made, as one versioned JSON document.

Invariants:

* ``lineage`` (a uuid4) is fixed for the life of a state; a backend
  refuses to overwrite a state of another lineage.
* ``serial`` grows by one on each write that changes the content; the
  backend sets it, callers continue from the state ``write`` returns.
* The text form is deterministic: top-level keys in a fixed order,
  resources sorted by address, nested objects with sorted keys, 2-space
  indent, trailing newline. Equal content gives byte-equal files.
* ``format_version`` is the shape of the document. A file of a newer
  format than :data:`FORMAT_VERSION` is refused with a clear message,
  never half-read; older formats are upgraded on read when there are any.

This module does no I/O; backends (``local.py``, …) store the text.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import metadata
from typing import Any

from modelform.state.canonical import canonical, compact, encode
from modelform.state.errors import NewerStateFormat, StateError
from modelform.state.resource import ResourceState, now_iso, split_address

__all__ = ["FORMAT_VERSION", "ResourceState", "State", "modelform_version", "now_iso"]

#: The state document shape this code reads and writes. Format 2 added a
#: resource's ``tainted``, ``target`` and ``sensitive``; a format-1 document
#: reads as untainted resources with no recorded target or secret keys.
#: Format 3 added the top-level ``outputs`` (written only when there are
#: any); an older document reads as one without outputs.
FORMAT_VERSION = 3

_TOP_KEYS = ("format_version", "lineage", "serial", "modelform_version", "resources", "outputs")
_OUTPUT_KEYS = ("value", "type", "sensitive")


@lru_cache(maxsize=1)
def modelform_version() -> str:
    """The installed modelform's version (recorded in every state written)."""
    try:
        return metadata.version("modelform")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def content_digest(data: dict[str, Any]) -> str:
    """sha256 of a document's content (from :meth:`State.to_json`): all but serial and version."""
    content = {k: v for k, v in data.items() if k not in ("serial", "modelform_version")}
    return hashlib.sha256(compact(content)).hexdigest()


@dataclass
class State:
    """A whole state: lineage, serial and resources by address."""

    lineage: str
    serial: int = 0
    resources: dict[str, ResourceState] = field(default_factory=dict)
    #: The modelform that wrote this state (set again by every write).
    modelform_version: str = field(default_factory=modelform_version)
    #: Output values by name, each ``{"value", "type", "sensitive"}`` (the
    #: values in clear, as the resources' secrets are).
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def new(
        cls, lineage: str | None = None, resources: Mapping[str, ResourceState] | None = None
    ) -> State:
        """A fresh state (serial 0) with a new lineage unless one is given."""
        state = cls(lineage=lineage or str(uuid.uuid4()))
        for rs in (resources or {}).values():
            state.set_resource(rs)
        return state

    # -- resources -------------------------------------------------------

    def addresses(self) -> list[str]:
        return sorted(self.resources)

    def get(self, address: str) -> ResourceState | None:
        return self.resources.get(address)

    def set_resource(self, rs: ResourceState, now: str | None = None) -> ResourceState:
        """Record ``rs`` (a copy), stamping timestamps against the one it replaces."""
        split_address(rs.address)
        stored = rs.stamped(self.resources.get(rs.address), now)
        self.resources[rs.address] = stored
        return stored

    def remove(self, address: str) -> ResourceState | None:
        return self.resources.pop(address, None)

    def with_resources(
        self, resources: Mapping[str, ResourceState], now: str | None = None
    ) -> State:
        """A copy holding exactly ``resources``, same lineage and serial.

        Resources whose content is unchanged keep their timestamps, so a
        state rebuilt from the same records has the same content.
        """
        now = now or now_iso()
        new = State(self.lineage, self.serial, {}, self.modelform_version, dict(self.outputs))
        for address, rs in resources.items():
            if address != rs.address:
                raise StateError(f"resource recorded under {address} has address {rs.address}")
            new.resources[address] = rs.stamped(self.resources.get(address), now)
        return new

    def copy(self) -> State:
        """A deep copy."""
        resources = {a: rs.copy() for a, rs in self.resources.items()}
        outputs = {n: dict(o) for n, o in self.outputs.items()}
        return State(self.lineage, self.serial, resources, self.modelform_version, outputs)

    # -- JSON ------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        """The document as canonical JSON data (see the module invariants)."""
        data: dict[str, Any] = {
            "format_version": FORMAT_VERSION,
            "lineage": self.lineage,
            "serial": self.serial,
            "modelform_version": self.modelform_version,
            "resources": [self.resources[a].to_json() for a in sorted(self.resources)],
        }
        if self.outputs:  # a state without outputs has the content it had before them
            data["outputs"] = canonical(self.outputs, "outputs")
        return data

    def encode(self) -> bytes:
        """The deterministic text of the document, as UTF-8 bytes."""
        return encode(self.to_json())

    def dumps(self) -> str:
        """The deterministic text of the document."""
        return self.encode().decode("utf-8")

    def content_digest(self) -> str:
        """A digest of everything a write is judged on: not serial, not version."""
        return content_digest(self.to_json())

    def same_content(self, other: State) -> bool:
        return self.content_digest() == other.content_digest()

    @classmethod
    def from_canonical(cls, data: dict[str, Any]) -> State:
        """Build from :meth:`to_json` output without validating again (it takes ``data``)."""
        resources = {r["address"]: ResourceState(**r) for r in data["resources"]}
        outputs = data.get("outputs") or {}
        return cls(data["lineage"], data["serial"], resources, data["modelform_version"], outputs)

    @classmethod
    def from_json(cls, data: Any, source: str = "state") -> State:
        """Validate and build a state from parsed JSON; :class:`StateError` names ``source``."""
        where = f"{source}: malformed state"
        if not isinstance(data, dict):
            raise StateError(f"{where}: the document must be a JSON object", source)
        version = data.get("format_version")
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise StateError(f"{where}: format_version must be a positive integer", source)
        if version > FORMAT_VERSION:
            writer = data.get("modelform_version")
            by = f"; it was written by modelform {writer}" if isinstance(writer, str) else ""
            raise NewerStateFormat(
                f"{source}: state format {version} is newer than this modelform understands "
                f"(format {FORMAT_VERSION}){by}: upgrade modelform to use it",
                source,
            )
        unknown = sorted(set(data) - set(_TOP_KEYS))
        if unknown:
            raise StateError(f"{where}: unknown key(s) {', '.join(unknown)}", source)
        lineage, serial = data.get("lineage"), data.get("serial")
        if not isinstance(lineage, str) or not lineage:
            raise StateError(f"{where}: lineage must be a non-empty string", source)
        if not isinstance(serial, int) or isinstance(serial, bool) or serial < 0:
            raise StateError(f"{where}: serial must be a non-negative integer", source)
        writer = data.get("modelform_version")
        if not isinstance(writer, str):
            raise StateError(f"{where}: modelform_version must be a string", source)
        items = data.get("resources")
        if not isinstance(items, list):
            raise StateError(f"{where}: resources must be a list", source)
        resources: dict[str, ResourceState] = {}
        for i, item in enumerate(items):
            try:
                rs = ResourceState.from_json(item, f"resources[{i}]")
            except StateError as e:
                raise StateError(f"{where}: {e}", source) from None
            if rs.address in resources:
                raise StateError(f"{where}: resource {rs.address} appears twice", source)
            resources[rs.address] = rs
        return cls(
            lineage, serial, resources, writer, _outputs(data.get("outputs", {}), where, source)
        )

    @classmethod
    def loads(cls, text: str | bytes, source: str = "state") -> State:
        """Parse the text form; malformed JSON is a :class:`StateError` naming ``source``."""
        try:
            if isinstance(text, bytes):
                text = text.decode("utf-8")
            data = json.loads(text)
        except UnicodeDecodeError as e:
            raise StateError(f"{source}: state is not UTF-8 text ({e.reason})", source) from None
        except json.JSONDecodeError as e:
            raise StateError(
                f"{source}: state is not valid JSON: {e.msg} at line {e.lineno} column {e.colno}",
                source,
            ) from None
        return cls.from_json(data, source)


def _outputs(data: Any, where: str, source: str) -> dict[str, dict[str, Any]]:
    """The ``outputs`` object of a document, checked: name → value, type, sensitive."""

    def bad(problem: str) -> StateError:
        return StateError(f"{where}: {problem}", source)

    if not isinstance(data, dict):
        raise bad("outputs must be an object")
    out = {}
    for name, item in data.items():
        if not isinstance(item, dict) or "value" not in item:
            raise bad(f"outputs.{name} must be an object with a value")
        extra = sorted(set(item) - set(_OUTPUT_KEYS))
        if extra:
            raise bad(f"outputs.{name}: unknown key(s) {', '.join(extra)}")
        if not isinstance(item.get("sensitive", False), bool):
            raise bad(f"outputs.{name}.sensitive must be true or false")
        if not isinstance(item.get("type", ""), str):
            raise bad(f"outputs.{name}.type must be a string")
        out[name] = {"sensitive": False, **canonical(item, f"{where}: outputs.{name}")}
    return out
