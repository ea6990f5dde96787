"""One resource as the state records it, and the shape of its address.

An address is ``type.name`` with optional child parts a provider adds
(``service.api``, ``model.ridge``, ``service.api/image``). The record
holds what the provider returned (``attributes``), the content digests
the plan compares, the addresses it depends on (the order destroy walks
backwards) and, for services, the last known status.

``to_json``/``from_json`` speak plain JSON objects (the engine's
records); the text form belongs to :class:`modelform.state.model.State`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from modelform.state.canonical import canonical, compact
from modelform.state.errors import StateError

ADDRESS_RE = re.compile(
    r"^(?P<type>[a-z][a-z0-9_]*)\.(?P<name>[^\s/.][^\s/]*)(?P<child>(/[^\s/]+)*)$"
)

_KEYS = (
    "address",
    "type",
    "name",
    "provider",
    "status",
    "attributes",
    "digests",
    "dependencies",
    "tainted",
    "target",
    "sensitive",
    "created_at",
    "updated_at",
)
_TIMESTAMPS = ("created_at", "updated_at")


def split_address(address: str) -> tuple[str, str, str]:
    """``(type, name, child)`` of an address; child is ``""`` or ``"/image"`` etc.

    Raises :class:`StateError` for anything that is not ``type.name[/child…]``.
    """
    m = ADDRESS_RE.match(address) if isinstance(address, str) else None
    if m is None:
        raise StateError(
            f"invalid resource address {address!r} (expected type.name, e.g. service.api)"
        )
    return m["type"], m["name"], m["child"]


def now_iso() -> str:
    """The current UTC time as ``2026-01-31T12:00:00Z``, the state's timestamp form."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class ResourceState:
    """The recorded state of one resource. Timestamps are UTC ISO 8601 strings."""

    address: str
    type: str
    name: str
    provider: str
    attributes: dict[str, Any] = field(default_factory=dict)
    digests: dict[str, str] = field(default_factory=dict)
    dependencies: list[str] = field(default_factory=list)
    status: str | None = None
    #: Made, but its check failed (or apply stopped before it): the next
    #: plan replaces it.
    tainted: bool = False
    #: The target it was made on (name, kind, options), so it can be read
    #: and deleted where it lives after the project file no longer names it.
    target: dict[str, Any] | None = None
    #: Attribute keys whose values are secret: masked wherever modelform
    #: shows this record (``state show``), though stored here in clear.
    sensitive: list[str] = field(default_factory=list)
    created_at: str | None = None
    updated_at: str | None = None

    def to_json(self) -> dict[str, Any]:
        """A fresh canonical JSON object (keys in documented order, deps sorted).

        Raises :class:`StateError` if an attribute cannot be stored in JSON.
        """
        where = f"resource {self.address}"
        return {
            "address": self.address,
            "type": self.type,
            "name": self.name,
            "provider": self.provider,
            "status": self.status,
            "attributes": canonical(dict(self.attributes), f"{where}: attributes"),
            "digests": canonical(dict(self.digests), f"{where}: digests"),
            "dependencies": sorted(set(self.dependencies)),
            "tainted": bool(self.tainted),
            "target": None
            if self.target is None
            else canonical(dict(self.target), f"{where}: target"),
            "sensitive": sorted(set(self.sensitive)),
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }

    @classmethod
    def from_json(cls, obj: Any, where: str = "resource") -> ResourceState:
        """Parse and validate one JSON object; :class:`StateError` says what is wrong."""
        if not isinstance(obj, dict):
            raise StateError(f"{where}: must be an object, not {_kind(obj)}")
        unknown = sorted(set(obj) - set(_KEYS))
        if unknown:
            raise StateError(f"{where}: unknown key(s) {', '.join(unknown)}")
        address = _need_str(obj, "address", where)
        where = f"{where} ({address})" if where == "resource" else where
        try:
            split_address(address)
        except StateError as e:
            raise StateError(f"{where}: {e}") from None
        attributes = obj.get("attributes", {})
        if not isinstance(attributes, dict):
            raise StateError(f"{where}: attributes must be an object, not {_kind(attributes)}")
        digests = obj.get("digests", {})
        if not isinstance(digests, dict) or not all(isinstance(v, str) for v in digests.values()):
            raise StateError(f"{where}: digests must be an object of strings")
        deps = obj.get("dependencies", [])
        if not isinstance(deps, list) or not all(isinstance(d, str) for d in deps):
            raise StateError(f"{where}: dependencies must be a list of addresses")
        tainted = obj.get("tainted", False)
        if not isinstance(tainted, bool):
            raise StateError(f"{where}: tainted must be true or false")
        target = obj.get("target")
        if target is not None and not isinstance(target, dict):
            raise StateError(f"{where}: target must be an object or null")
        secret = obj.get("sensitive", [])
        if not isinstance(secret, list) or not all(isinstance(k, str) for k in secret):
            raise StateError(f"{where}: sensitive must be a list of attribute names")
        return cls(
            address=address,
            type=_need_str(obj, "type", where),
            name=_need_str(obj, "name", where),
            provider=_need_str(obj, "provider", where),
            attributes=canonical(attributes, f"{where}: attributes"),
            digests=dict(digests),
            dependencies=list(deps),
            status=_opt_str(obj, "status", where),
            tainted=tainted,
            target=None if target is None else canonical(target, f"{where}: target"),
            sensitive=list(secret),
            created_at=_opt_str(obj, "created_at", where),
            updated_at=_opt_str(obj, "updated_at", where),
        )

    def copy(self) -> ResourceState:
        """A deep copy (in canonical form: dependencies sorted, keys sorted)."""
        return ResourceState(**self.to_json())

    def content(self) -> dict[str, Any]:
        """The canonical object without timestamps: what "changed" is judged on."""
        return _content(self.to_json())

    def same_content(self, other: ResourceState) -> bool:
        """Equal but for timestamps, judged on the JSON text (so ``1 != 1.0 != True``)."""
        return compact(self.content()) == compact(other.content())

    def stamped(self, prior: ResourceState | None, now: str | None = None) -> ResourceState:
        """A copy with timestamps carried from ``prior`` or set to ``now``.

        Unchanged content keeps the prior's timestamps, so rewriting the
        same resources changes nothing; changed content keeps ``created_at``
        and gets a new ``updated_at``.
        """
        data = self.to_json()
        new = ResourceState(**data)
        if prior is not None and compact(prior.content()) == compact(_content(data)):
            new.created_at, new.updated_at = prior.created_at, prior.updated_at
            return new
        now = now or now_iso()
        new.created_at = (prior.created_at if prior else None) or self.created_at or now
        new.updated_at = now
        return new


def _content(data: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if k not in _TIMESTAMPS}


def _kind(value: Any) -> str:
    names: dict[type, str] = {dict: "an object", list: "a list", str: "a string"}
    return names.get(type(value), type(value).__name__)


def _need_str(obj: dict[str, Any], key: str, where: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value:
        raise StateError(f"{where}: {key} must be a non-empty string")
    return value


def _opt_str(obj: dict[str, Any], key: str, where: str) -> str | None:
    value = obj.get(key)
    if value is not None and not isinstance(value, str):
        raise StateError(f"{where}: {key} must be a string or null")
    return value
