"""From the loaded config to the set of desired resources (graph nodes).

Each declared model, environment, target and service becomes a
:class:`Node` with its address, the provider kind that manages it, its raw
configuration (references still unresolved), the addresses it depends on
(references plus the implicit service → model/environment/target edges)
and the content digests of its inputs.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelform.engine import references
from modelform.engine.config import DEFAULT_TARGET, SECTIONS, Config
from modelform.engine.diagnostics import Pos
from modelform.engine.digests import digest_json, digest_path

CORE = "core"


@dataclass
class Node:
    address: str
    type: str
    name: str
    provider: str
    config: dict[str, Any]
    pos: Pos
    depends_on: set[str] = field(default_factory=set)
    #: Where each dependency comes from, for pointing at cycles.
    dep_pos: dict[str, Pos] = field(default_factory=dict)
    digests: dict[str, str] = field(default_factory=dict)


def address(section: str, name: str) -> str:
    return f"{SECTIONS[section]}.{name}"


def target_kind(config: Config, target: str) -> str:
    declared = config.targets.get(target)
    if declared is None and target == DEFAULT_TARGET:
        return "local"
    return str((declared or {}).get("kind", "local"))


class _Digests:
    """Content digests of one plan's inputs; a file or folder that several
    resources share (one source folder for many services) is read once."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self._paths: dict[str, str] = {}
        self._real: dict[str, str] = {}

    def real(self, rel: str) -> str:
        """The resolved path of ``rel``, found once per plan (thousands of
        services name the same entry script)."""
        full = self._real.get(rel)
        if full is None:
            full = self._real[rel] = os.path.realpath(os.path.join(self.base, rel))
        return full

    def path(self, rel: str) -> str:
        full = self.real(rel)
        if full not in self._paths:
            self._paths[full] = digest_path(Path(full))
        return self._paths[full]

    def of(self, section: str, body: dict[str, Any]) -> dict[str, str]:
        if section == "models":
            return {"content": self.path(body["path"])}
        if section == "services":
            source = body.get("source_dir") or os.path.dirname(body["entry_script"]) or "."
            code = self.path(source)
            src_dir = self.real(source)
            entry = self.real(body["entry_script"])
            if not entry.startswith(src_dir + os.sep):
                code = digest_json([code, self.path(body["entry_script"])])
            return {"code": code}
        if section == "environments" and body.get("conda_file"):
            return {"config": digest_json([body, self.path(body["conda_file"])])}
        return {"config": digest_json(body)}


def desired_nodes(
    config: Config,
    *,
    with_digests: bool = True,
    target_parts: Mapping[str, str] | None = None,
    parts_first: Collection[str] = (),
) -> dict[str, Node]:
    """One node per declared thing; with ``target_parts`` (kind → part name,
    from the providers that own their target's resource), one more node
    ``target.<name>/<part>`` per target of such a kind, depending on the
    target and on every service deployed to it — or, for the kinds in
    ``parts_first``, that every service deployed to it depends on."""
    nodes: dict[str, Node] = {}
    digests = _Digests(config.dir)
    for section, rtype in SECTIONS.items():
        for name, body in config.section(section).items():
            addr = address(section, name)
            provider = CORE
            if section == "services":
                provider = target_kind(config, body.get("target") or DEFAULT_TARGET)
            node = Node(addr, rtype, name, provider, body, config.pos((section, name)))
            for ref in references.find_refs(body):
                if ref.section == "var":
                    continue
                dep = address(ref.section, ref.name)
                node.depends_on.add(dep)
                node.dep_pos[dep] = config.pos((section, name, *ref.path))
            if section == "services":
                implicit: list[tuple[str, str, tuple[str | int, ...]]] = [
                    ("models", m, ("models", i)) for i, m in enumerate(body.get("models", []))
                ]
                if body.get("environment"):
                    implicit.append(("environments", body["environment"], ("environment",)))
                tgt = body.get("target") or DEFAULT_TARGET
                if tgt in config.targets:
                    implicit.append(("targets", tgt, ("target",)))
                for sec, dep_name, path in implicit:
                    dep = address(sec, dep_name)
                    node.depends_on.add(dep)
                    node.dep_pos.setdefault(dep, config.pos((section, name, *path)))
            if with_digests:
                node.digests = digests.of(section, body)
            nodes[addr] = node
    for tname, body in config.targets.items():
        kind = str(body.get("kind", "local"))
        part = (target_parts or {}).get(kind)
        if not part:
            continue
        taddr = address("targets", tname)
        node = Node(f"{taddr}/{part}", "target", tname, kind, body, config.pos(("targets", tname)))
        node.depends_on.add(taddr)
        for name, svc in config.services.items():
            if (svc.get("target") or DEFAULT_TARGET) == tname:
                dep = address("services", name)
                if kind in parts_first:
                    nodes[dep].depends_on.add(node.address)
                    nodes[dep].dep_pos[node.address] = config.pos(("services", name, "target"))
                    continue
                node.depends_on.add(dep)
                node.dep_pos[dep] = config.pos(("services", name, "target"))
        node.digests = {"config": digest_json(body)}
        nodes[node.address] = node
    return nodes


def _state_record(
    address: str, rtype: str, name: str, provider: str, attributes: dict[str, Any],
    digests: dict[str, str], dependencies: list[str], target: dict[str, Any] | None,
    tainted: bool, sensitive: list[str] | None,
) -> dict[str, Any]:  # fmt: skip
    """The one shape of a record (what modelform.state.ResourceState stores)."""
    return {
        "address": address,
        "type": rtype,
        "name": name,
        "provider": provider,
        "attributes": attributes,
        "digests": digests,
        "dependencies": dependencies,
        "status": attributes.get("status"),
        "tainted": tainted,
        "target": target,
        "sensitive": sorted(sensitive or []),
    }


def record(
    node: Node,
    provider: str,
    attributes: dict[str, Any],
    *,
    target: dict[str, Any] | None = None,
    tainted: bool = False,
    sensitive: list[str] | None = None,
) -> dict[str, Any]:
    """The state record of ``node`` now real with ``attributes``."""
    return _state_record(
        node.address, node.type, node.name, provider, attributes, dict(node.digests),
        sorted(node.depends_on), target, tainted, sensitive,
    )  # fmt: skip


def child_record(
    parent: str, name: str, provider: str, ctype: str, attributes: dict[str, Any],
    *, target: dict[str, Any] | None = None, tainted: bool = False,
    sensitive: list[str] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """The state record of a child object ``<parent>/<name>``: it depends on
    its parent and has no digests of its own."""
    return _state_record(
        f"{parent}/{name}", ctype, parent.split(".", 1)[1], provider, attributes, {}, [parent],
        target, tainted, sensitive,
    )  # fmt: skip


def is_child(address: str, rec: Mapping[str, Any]) -> bool:
    """A child object's record (``service.api/deployment``, type ``deployment``)
    rather than a node of its own: its type is not its address's type (a
    target-owned resource, ``target.edge/manifest``, has type ``target``)."""
    return "/" in address and rec.get("type") != address.split(".", 1)[0]


def parent_of(address: str) -> str:
    return address.rsplit("/", 1)[0]


def child_index(records: Mapping[str, dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """Every child record by parent address and child name, in one pass (a
    plan asks for the children of every resource)."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for a, r in records.items():
        if "/" in a and is_child(a, r):
            parent, _, name = a.rpartition("/")
            out.setdefault(parent, {})[name] = r
    return out
