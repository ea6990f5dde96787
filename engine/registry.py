"""Finding providers: the ``modelform.providers`` entry-point group, only.

Built-in providers register exactly like third-party ones. A plugin that
cannot be loaded, is not a :class:`Provider`, or names another kind than
its entry point fails early with a message naming the plugin.
"""

from __future__ import annotations

from functools import cache
from importlib.metadata import entry_points

from modelform.engine.kinds import KindInfo
from modelform.engine.provider import Provider

GROUP = "modelform.providers"


class PluginError(Exception):
    """A provider plugin is broken; the message names it and the problem."""


@cache
def _entry_points() -> dict[str, object]:
    return {ep.name: ep for ep in entry_points(group=GROUP)}


def kinds() -> list[str]:
    return sorted(_entry_points())


class Registry:
    """Loaded providers, one instance per kind, made on first use."""

    def __init__(self, extra: dict[str, Provider] | None = None) -> None:
        self._loaded: dict[str, Provider] = dict(extra or {})

    def known(self, kind: str) -> bool:
        return kind in self._loaded or kind in _entry_points()

    def kinds(self) -> list[str]:
        return sorted(set(self._loaded) | set(_entry_points()))

    def get(self, kind: str) -> Provider:
        if kind in self._loaded:
            return self._loaded[kind]
        ep = _entry_points().get(kind)
        if ep is None:
            raise PluginError(
                f"no provider for kind {kind!r} (known: {', '.join(self.kinds()) or 'none'})"
            )
        try:
            cls = ep.load()  # type: ignore[attr-defined]
        except Exception as e:  # a plugin's import error must name the plugin
            raise PluginError(f"provider plugin {kind!r} ({ep.value}) failed to load: {e}") from e  # type: ignore[attr-defined]
        if not (isinstance(cls, type) and issubclass(cls, Provider)):
            raise PluginError(f"provider plugin {kind!r} ({ep.value}) is not a Provider class")  # type: ignore[attr-defined]
        if cls.kind != kind:
            raise PluginError(
                f"provider plugin {kind!r} ({ep.value}) declares kind {cls.kind!r}"  # type: ignore[attr-defined]
            )
        provider = cls()
        self._loaded[kind] = provider
        return provider


class _Catalog:
    """The installed kinds as the project-file checks see them (lazily loaded)."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self._infos: dict[str, KindInfo | None] = {}

    def kinds(self) -> list[str]:
        return self.registry.kinds()

    def info(self, kind: str) -> KindInfo | None:
        if kind not in self._infos:
            if not self.registry.known(kind):
                self._infos[kind] = None
            else:
                p = self.registry.get(kind)
                self._infos[kind] = KindInfo(
                    kind=kind,
                    service_schema=p.service_schema(),
                    target_schema=p.target_schema(),
                    attributes={t: p.attributes(t) for t in (*p.resource_types, "service")},
                    description=p.description,
                )
        return self._infos[kind]


def catalog(registry: Registry) -> _Catalog:
    return _Catalog(registry)
