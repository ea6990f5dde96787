"""Finding state backends: the ``modelform.backends`` entry-point group.

Built-in backends register exactly like third-party ones (pyproject:
``local = "modelform.state.local:LocalBackend"``). Loading fails early,
with one line naming the plugin and the problem: an unknown name, a
module that does not import, an object that is not a :class:`Backend`,
or options the backend does not take.
"""

from __future__ import annotations

import inspect
from importlib import metadata
from typing import Any

from modelform.state.backend import Backend
from modelform.state.errors import BackendLoadError, StateError

GROUP = "modelform.backends"


def _entry_points(name: str | None = None) -> list[metadata.EntryPoint]:
    eps = metadata.entry_points(group=GROUP)
    found = [ep for ep in eps if name is None or ep.name == name]
    unique: dict[tuple[str, str], metadata.EntryPoint] = {}
    for ep in found:  # an editable install can list the same entry point twice
        unique.setdefault((ep.name, ep.value), ep)
    return list(unique.values())


def available_backends() -> list[str]:
    """The names of every registered backend, sorted."""
    return sorted({ep.name for ep in _entry_points()})


def backend_class(name: str) -> type[Backend]:
    """The class registered as ``name``; :class:`BackendLoadError` says why not."""
    eps = _entry_points(name)
    if not eps:
        known = ", ".join(available_backends()) or "none"
        raise BackendLoadError(f"unknown state backend {name!r} (installed: {known})")
    if len(eps) > 1:
        values = ", ".join(sorted(ep.value for ep in eps))
        raise BackendLoadError(f"state backend {name!r} is registered more than once: {values}")
    ep = eps[0]
    try:
        obj = ep.load()
    except Exception as e:  # any import-time failure of a plugin is the plugin's
        raise BackendLoadError(
            f"state backend {name!r} ({ep.value}) failed to import: {type(e).__name__}: {e}"
        ) from e
    if not (inspect.isclass(obj) and issubclass(obj, Backend)):
        raise BackendLoadError(
            f"state backend {name!r} ({ep.value}) is not a subclass of modelform.state.Backend"
        )
    if inspect.isabstract(obj):
        missing = ", ".join(sorted(getattr(obj, "__abstractmethods__", ())))
        raise BackendLoadError(f"state backend {name!r} ({ep.value}) does not implement: {missing}")
    return obj


def load_backend(name: str, **options: Any) -> Backend:
    """An instance of the backend registered as ``name``, built with ``options``."""
    cls = backend_class(name)
    try:
        inspect.signature(cls).bind(**options)
    except TypeError as e:
        raise BackendLoadError(f"state backend {name!r} does not take these options: {e}") from e
    try:
        return cls(**options)
    except StateError:
        raise
    except Exception as e:
        raise BackendLoadError(
            f"state backend {name!r} could not start: {type(e).__name__}: {e}"
        ) from e
