"""Finding providers: the ``modelform.providers`` entry-point group, only.

Built-in providers register exactly like third-party ones. Every problem
with a plugin is one line (:class:`PluginError`) naming the kind, the
package it comes from (distribution name and version) and the problem,
raised when the kind is first used:

* two packages registering one kind (never silently one of them);
* a module that does not import, a constructor that raises;
* an object that is not a :class:`Provider` subclass, or that declares
  another kind or another ``protocol_version`` than this engine's;
* a required method (:data:`~modelform.engine.provider.REQUIRED_METHODS`)
  left to the base class.

A loaded plugin is handed out inside a :class:`GuardedProvider`: an
unexpected exception from one of its methods becomes a one-line
:class:`PluginError` naming the plugin and the method, never a traceback.
The protocol's own errors (:class:`ProviderError`, :class:`Cancelled`,
:class:`DiagnosticError`) and ``KeyboardInterrupt``/``SystemExit`` pass
through unchanged.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cache
from importlib.metadata import EntryPoint, entry_points
from typing import Any, cast

from modelform.engine.diagnostics import DiagnosticError
from modelform.engine.kinds import KindInfo
from modelform.engine.provider import PROTOCOL_VERSION, REQUIRED_METHODS, Provider, ProviderError

GROUP = "modelform.providers"


class PluginError(Exception):
    """A provider plugin is broken; the message names it and the problem."""


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def _norm(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


@dataclass(frozen=True)
class Plugin:
    """One registration of a kind: an entry point and the package it comes from."""

    kind: str
    #: The entry point's value, ``"module:Class"``.
    value: str
    #: The distribution's name and version ("" when the entry point has none).
    package: str
    version: str
    entry_point: EntryPoint

    @classmethod
    def of(cls, ep: EntryPoint) -> Plugin:
        dist = getattr(ep, "dist", None)
        name = (dist.name if dist is not None else "") or ""
        version = (dist.version if dist is not None else "") or ""
        return cls(ep.name, ep.value, name, version, ep)

    @property
    def origin(self) -> str:
        """``"mf-edge 1.2.0"``: how messages name the package."""
        if not self.package:
            return "unknown package"
        return f"{self.package} {self.version}".strip()

    def label(self) -> str:
        return f"provider plugin {self.kind!r} ({self.origin}, {self.value})"


def _group(eps: Iterable[EntryPoint]) -> dict[str, list[Plugin]]:
    """Registrations by kind. The same entry point of the same package seen
    twice (an editable install's metadata found both in site-packages and in
    the source folder) counts once; the first one found wins, as for imports."""
    out: dict[str, list[Plugin]] = {}
    for ep in eps:
        p = Plugin.of(ep)
        same = out.setdefault(p.kind, [])
        if not any(q.value == p.value and _norm(q.package) == _norm(p.package) for q in same):
            same.append(p)
    return out


@cache
def _entry_points() -> dict[str, list[Plugin]]:
    """The installed registrations, read once per process;
    ``_entry_points.cache_clear()`` reads them again."""
    return _group(entry_points(group=GROUP))


def kinds() -> list[str]:
    return sorted(_entry_points())


def implements(provider: object, method: str) -> bool:
    """Whether ``provider`` (a class, an instance or a :class:`GuardedProvider`)
    overrides ``method`` of the :class:`Provider` base class."""
    if isinstance(provider, GuardedProvider):
        provider = provider.wrapped
    cls = provider if isinstance(provider, type) else type(provider)
    return getattr(cls, method, None) is not getattr(Provider, method)


#: Exceptions that are part of the protocol: a provider raises them on purpose.
_PROTOCOL_ERRORS = (ProviderError, DiagnosticError, PluginError)


class GuardedProvider:
    """A loaded plugin's provider as the engine sees it.

    Attributes (``kind``, ``description``, ``read_is_cheap``,
    ``target_part``, …) pass through. Method calls pass through too; an
    exception the protocol does not define becomes a one-line
    :class:`PluginError` naming the plugin, the package and the method (the
    original is its ``__cause__``). Only :class:`Exception` is caught, so
    ``KeyboardInterrupt`` and ``SystemExit`` pass unchanged.

    It is typed as :class:`Provider` where it is handed out but is not an
    instance of it: ask :func:`implements` whether a method is overridden,
    never ``type(provider)``.
    """

    def __init__(self, provider: Provider, plugin: Plugin) -> None:
        self.wrapped = provider
        self.plugin = plugin

    def __getattr__(self, name: str) -> Any:
        value = getattr(self.wrapped, name)
        if name.startswith("__") or isinstance(value, type) or not callable(value):
            return value
        guarded = self._guard(name, value)
        self.__dict__[name] = guarded  # found directly from now on
        return guarded

    def _guard(self, method: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        plugin = self.plugin

        def call(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except _PROTOCOL_ERRORS:
                raise
            except Exception as e:
                raise PluginError(
                    f"provider {plugin.kind} ({plugin.origin}) failed in {method}(): {_one_line(e)}"
                ) from e

        call.__name__ = method
        call.__doc__ = fn.__doc__
        return call

    def __repr__(self) -> str:
        return f"<GuardedProvider {self.plugin.kind} ({self.plugin.origin}): {self.wrapped!r}>"


@dataclass(frozen=True)
class ProviderInfo:
    """One row of ``modelform providers``: what is installed and whether it loads."""

    kind: str
    #: ``"module:Class"`` as registered.
    provider: str
    package: str
    version: str
    #: The protocol version the provider declares (None when it does not load).
    protocol_version: int | None
    description: str
    #: The one-line reason it does not load, or None.
    error: str | None = None

    @property
    def loads(self) -> bool:
        return self.error is None

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "provider": self.provider,
            "package": self.package,
            "version": self.version,
            "protocol_version": self.protocol_version,
            "description": self.description,
            "loads": self.loads,
            "error": self.error,
        }


def _load_class(plugin: Plugin) -> type[Provider]:
    """The plugin's provider class, checked; PluginError says what is wrong."""
    label = plugin.label()
    try:
        obj = plugin.entry_point.load()
    except Exception as e:  # any import-time failure is the plugin's
        raise PluginError(f"{label} failed to import: {_one_line(e)}") from e
    if not (isinstance(obj, type) and issubclass(obj, Provider)):
        raise PluginError(f"{label} is not a subclass of modelform.plugin.Provider")
    if obj.kind != plugin.kind:
        raise PluginError(f"{label} declares kind {obj.kind!r}, not {plugin.kind!r}")
    version = getattr(obj, "protocol_version", None)
    if version is None:
        raise PluginError(
            f"{label} declares no protocol_version; this modelform speaks protocol "
            f"{PROTOCOL_VERSION} (a plugin written before protocol versions: install a version "
            "of the plugin made for it)"
        )
    if version != PROTOCOL_VERSION:
        raise PluginError(
            f"{label} is written for provider protocol {version!r}; this modelform speaks "
            f"protocol {PROTOCOL_VERSION} (install a version of the plugin made for it)"
        )
    missing = [f"{m}()" for m in REQUIRED_METHODS if not implements(obj, m)]
    if missing:
        raise PluginError(f"{label} does not implement {', '.join(missing)}")
    return obj


def _instantiate(plugin: Plugin, cls: type[Provider]) -> Provider:
    try:
        return cls()
    except Exception as e:
        raise PluginError(f"{plugin.label()} failed to start: {_one_line(e)}") from e


def _duplicate_error(kind: str, plugins: list[Plugin]) -> PluginError:
    named = sorted(f"{p.origin} ({p.value})" for p in plugins)
    both = ", ".join(named[:-1]) + " and " + named[-1]
    return PluginError(
        f"provider kind {kind!r} is registered by more than one package: {both}; "
        "uninstall all but one"
    )


class Registry:
    """Loaded providers, one instance per kind, made on first use.

    ``extra`` providers (tests, embedding) are handed out as given; the
    installed ones, or ``entry_points`` when given instead, are loaded,
    checked and wrapped in a :class:`GuardedProvider`.
    """

    def __init__(
        self,
        extra: dict[str, Provider] | None = None,
        entry_points: Iterable[EntryPoint] | None = None,
    ) -> None:
        self._loaded: dict[str, Provider] = dict(extra or {})
        self._extra = set(self._loaded)
        self._plugins = None if entry_points is None else _group(entry_points)
        self._broken: dict[str, str] = {}
        self._lock = threading.Lock()

    def plugins(self) -> dict[str, list[Plugin]]:
        return _entry_points() if self._plugins is None else self._plugins

    def known(self, kind: str) -> bool:
        return kind in self._loaded or kind in self.plugins()

    def kinds(self) -> list[str]:
        return sorted(set(self._loaded) | set(self.plugins()))

    def get(self, kind: str) -> Provider:
        if kind in self._loaded:
            return self._loaded[kind]
        with self._lock:
            if kind in self._loaded:
                return self._loaded[kind]
            if kind in self._broken:  # one import attempt per process
                raise PluginError(self._broken[kind])
            found = self.plugins().get(kind)
            if not found:
                raise PluginError(
                    f"no provider for kind {kind!r} (known: {', '.join(self.kinds()) or 'none'})"
                )
            try:
                if len(found) > 1:
                    raise _duplicate_error(kind, found)
                plugin = found[0]
                provider = _instantiate(plugin, _load_class(plugin))
            except PluginError as e:
                self._broken[kind] = str(e)
                raise
            # Typed as a Provider for its callers; GuardedProvider says why.
            self._loaded[kind] = cast(Provider, GuardedProvider(provider, plugin))
            return self._loaded[kind]

    def listing(self) -> list[ProviderInfo]:
        """Every kind, loaded to learn whether it works: a broken plugin is a
        row with its error (each package of a kind registered twice is one),
        never an exception."""
        rows: list[ProviderInfo] = []
        for kind in self.kinds():
            if kind in self._extra:
                p = self._loaded[kind]
                where = f"{type(p).__module__}:{type(p).__qualname__}"
                rows.append(ProviderInfo(kind, where, "", "", p.protocol_version, p.description))
                continue
            try:
                g = cast(GuardedProvider, self.get(kind))
            except PluginError as e:
                for q in sorted(self.plugins()[kind], key=lambda q: (q.package, q.value)):
                    rows.append(ProviderInfo(kind, q.value, q.package, q.version, None, "", str(e)))
                continue
            plugin = g.plugin
            rows.append(
                ProviderInfo(
                    kind,
                    plugin.value,
                    plugin.package,
                    plugin.version,
                    g.protocol_version,
                    g.description,
                )  # fmt: skip
            )
        return rows


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
