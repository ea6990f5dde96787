"""What the hub reads of a deployment manifest: modules, routes, desired properties.

The manifest is the documented IoT Edge deployment (JSON)::

    {"modulesContent": {
        "$edgeAgent": {"properties.desired": {"modules": {"<name>": {...}}, ...}},
        "$edgeHub": {"properties.desired": {"routes": {"<route>": "FROM ... INTO ..."}, ...}},
        "<name>": {"properties.desired": {...}}}}

Modules are the keys of ``$edgeAgent``'s ``modules``; a module's twin
desired properties are its own ``properties.desired`` (``$``-keys such as
``$version`` are IoT Hub's and dropped). ``ManifestError`` is one line
naming the file and the problem.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from modelform.runtime.edge.routes import Route, RouteError, check_modules, parse_routes


class ManifestError(ValueError):
    """A manifest the hub cannot run; one line."""


@dataclass
class Deployment:
    modules: list[str]
    routes: list[Route]
    desired: dict[str, dict[str, Any]] = field(default_factory=dict)
    digest: str = ""

    def routes_from(self, module: str) -> list[Route]:
        return [r for r in self.routes if r.module is None or r.module == module]


def load(path: Path) -> Deployment:
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ManifestError(f"cannot read the manifest {path}: {error.strerror}") from None
    try:
        document = orjson.loads(data)
    except orjson.JSONDecodeError as error:
        raise ManifestError(f"{path}: not JSON ({error})") from None
    try:
        deployment = parse(document)
    except ManifestError as error:
        raise ManifestError(f"{path}: {error}") from None
    deployment.digest = "sha256:" + hashlib.sha256(data).hexdigest()
    return deployment


def parse(document: Any) -> Deployment:
    content = _object(document, "modulesContent", "the manifest")
    agent = _desired(content, "$edgeAgent")
    hub = _desired(content, "$edgeHub")
    modules_spec = agent.get("modules", {})
    if not isinstance(modules_spec, dict):
        raise ManifestError("$edgeAgent modules must be an object")
    modules = sorted(modules_spec)
    routes_spec = hub.get("routes", {})
    if not isinstance(routes_spec, dict):
        raise ManifestError("$edgeHub routes must be an object")
    try:
        routes = parse_routes(routes_spec)
        check_modules(routes, set(modules))
    except RouteError as error:
        raise ManifestError(str(error)) from None
    desired: dict[str, dict[str, Any]] = {}
    for module in modules:
        twin = content.get(module)
        if twin is None:
            desired[module] = {}
            continue
        if not isinstance(twin, dict) or not isinstance(twin.get("properties.desired", {}), dict):
            raise ManifestError(f"module {module}: properties.desired must be an object")
        props = twin.get("properties.desired", {})
        desired[module] = {k: v for k, v in props.items() if not k.startswith("$")}
    return Deployment(modules=modules, routes=routes, desired=desired)


def _object(parent: Any, key: str, where: str) -> dict[str, Any]:
    if not isinstance(parent, dict) or not isinstance(parent.get(key), dict):
        raise ManifestError(f"{where} has no {key} object")
    value: dict[str, Any] = parent[key]
    return value


def _desired(content: dict[str, Any], system_module: str) -> dict[str, Any]:
    agent = _object(content, system_module, "modulesContent")
    return _object(agent, "properties.desired", system_module)
