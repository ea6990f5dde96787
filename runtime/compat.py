"""Let Azure ML scoring scripts import ``azureml.contrib.services.*`` without azureml.

Scripts written for the Azure ML inference server import
``azureml.contrib.services.aml_request`` / ``aml_response`` (or the same
modules under ``azureml_inference_server_http.api``). :func:`install`
appends an import finder to the *end* of ``sys.meta_path``: it answers
only for those names and only when no other finder does, so a real
``azureml`` installation always wins. The answers are this package's
Flask-free modules, under both names (one module object, one
``@rawhttp`` flag).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
from types import ModuleType

_ALIASES = {
    "azureml.contrib.services.aml_request": "modelform.runtime.aml_request",
    "azureml.contrib.services.aml_response": "modelform.runtime.aml_response",
    "azureml_inference_server_http.api.aml_request": "modelform.runtime.aml_request",
    "azureml_inference_server_http.api.aml_response": "modelform.runtime.aml_response",
}
_PACKAGES = {
    "azureml",
    "azureml.contrib",
    "azureml.contrib.services",
    "azureml_inference_server_http",
    "azureml_inference_server_http.api",
}

#: Every module name under which a ``rawhttp`` flag may live (real or ours).
RAW_FLAG_MODULES = ("modelform.runtime.aml_request", *_ALIASES)


class _ShimFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path, target=None):  # type: ignore[no-untyped-def]
        if fullname in _PACKAGES:
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        if fullname in _ALIASES:
            return importlib.machinery.ModuleSpec(fullname, self)
        return None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        target = _ALIASES.get(spec.name)
        return importlib.import_module(target) if target else None

    def exec_module(self, module: ModuleType) -> None:
        return None


_FINDER = _ShimFinder()


def install() -> None:
    """Make the stand-in modules importable (idempotent)."""
    if _FINDER not in sys.meta_path:
        sys.meta_path.append(_FINDER)


def raw_http_requested() -> bool:
    """True when a loaded script decorated something with ``@rawhttp`` (ours or Azure ML's)."""
    for name in RAW_FLAG_MODULES:
        module = sys.modules.get(name)
        if module is not None and getattr(module, "_rawHttpRequested", False):
            return True
    return False
