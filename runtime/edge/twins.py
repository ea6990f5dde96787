"""Module twins: desired properties from the manifest, reported properties from the module.

``DIR/twins.json``: ``{module: {"desired": {...}, "desired_version": n,
"reported": {...}, "reported_version": m}}``. A manifest (re)load that
changes a module's desired properties bumps its version and yields the
patch to push (a JSON merge patch: changed keys, removed keys as null).
The versions only grow, across hub restarts too, as IoT Hub's do; a
module's SDK reads ``$version`` to order what it got.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from modelform.runtime.edge.files import read_json, write_json

FILE = "twins.json"


def merge_patch(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """The JSON merge patch that turns ``old`` into ``new``."""
    patch: dict[str, Any] = {}
    for key in old:
        if key not in new:
            patch[key] = None
    for key, value in new.items():
        before = old.get(key)
        if isinstance(value, dict) and isinstance(before, dict):
            inner = merge_patch(before, value)
            if inner:
                patch[key] = inner
        elif key not in old or before != value:
            patch[key] = value
    return patch


def apply_patch(document: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    result = dict(document)
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = apply_patch(result[key], value)
        else:
            result[key] = value
    return result


class Twins:
    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / FILE
        self.twins: dict[str, dict[str, Any]] = {}

    def open(self) -> None:
        try:
            document = read_json(self.path)
        except FileNotFoundError:
            return
        if isinstance(document, dict):
            self.twins = {k: v for k, v in document.items() if isinstance(v, dict)}

    def _save(self) -> None:
        write_json(self.path, self.twins)

    def _twin(self, module: str) -> dict[str, Any]:
        return self.twins.setdefault(
            module, {"desired": {}, "desired_version": 1, "reported": {}, "reported_version": 1}
        )

    def set_desired(self, desired: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """Take the manifest's desired properties; return module -> patch (with ``$version``)."""
        patches: dict[str, dict[str, Any]] = {}
        changed = False
        for module, props in desired.items():
            fresh = module not in self.twins
            twin = self._twin(module)
            patch = merge_patch(twin["desired"], props)
            if patch and not fresh:
                twin["desired_version"] += 1
                patches[module] = {**patch, "$version": twin["desired_version"]}
            if patch or fresh:
                twin["desired"] = props
                changed = True
        if changed:
            self._save()
        return patches

    def document(self, module: str) -> dict[str, Any]:
        """The twin as ``GET`` answers it: ``{"desired": {...}, "reported": {...}}``."""
        twin = self._twin(module)
        return {
            "desired": {**twin["desired"], "$version": twin["desired_version"]},
            "reported": {**twin["reported"], "$version": twin["reported_version"]},
        }

    def patch_reported(self, module: str, patch: dict[str, Any]) -> int:
        twin = self._twin(module)
        twin["reported"] = apply_patch(twin["reported"], patch)
        twin["reported_version"] += 1
        self._save()
        return int(twin["reported_version"])
