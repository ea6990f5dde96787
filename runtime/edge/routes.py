"""Routes of the ``$edgeHub`` desired properties, parsed and matched by the local hub.

IoT Edge route syntax (documented as "Declare routes")::

    FROM <source> [WHERE <condition>] INTO <sink>

Sources: ``/*`` and ``/messages/*`` (every message from every module),
``/messages/modules/*``, ``/messages/modules/<m>/*`` (module ``m``, through
any output or none), ``/messages/modules/<m>/outputs/*`` (through any
output) and ``/messages/modules/<m>/outputs/<o>``. Sinks: ``$upstream`` and
``BrokeredEndpoint("/modules/<m>/inputs/<i>")``. ``/twinChangeNotifications``
sources and other sinks are refused with a one-line ``RouteError``: the hub
never keeps a route it would silently not run.

This is the runtime's own reading of the syntax (the runtime imports
nothing of the providers); the provider validates the same routes at
``modelform validate`` with file:line diagnostics.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from modelform.runtime.edge.condition import (
    ConditionError,
    Evaluator,
    MessageView,
    compile_condition,
)

UPSTREAM = "$upstream"

_ROUTE = re.compile(
    r"^\s*FROM\s+(?P<source>\S+)(?:\s+WHERE\s+(?P<condition>.+?))?"
    r"\s+INTO\s+(?P<sink>\$upstream|BrokeredEndpoint\s*\(\s*(?P<q>[\"'])(?P<endpoint>[^\"']*)(?P=q)\s*\))"
    r"\s*$",
    re.IGNORECASE | re.DOTALL,
)
_NAME = r"[A-Za-z0-9_\-.:$@]+"
_MODULE_SOURCE = re.compile(rf"^/messages/modules/(?P<module>{_NAME})(?:/(?P<rest>.*))?$")
_ENDPOINT = re.compile(rf"^/modules/(?P<module>{_NAME})/inputs/(?P<input>{_NAME})$")


class RouteError(ValueError):
    """A route the hub cannot run; one line for the user."""


@dataclass(frozen=True)
class Route:
    """One parsed route.

    ``module`` None: messages of every module; ``output`` None: any output
    (``any_output`` False also admits messages sent without an output);
    ``sink_module`` None: the sink is ``$upstream``.
    """

    name: str
    text: str
    module: str | None
    output: str | None
    any_output: bool
    sink_module: str | None
    sink_input: str | None
    condition_text: str | None = None
    priority: int = 0
    ttl_seconds: int | None = None
    condition: Evaluator | None = field(default=None, compare=False, repr=False)

    @property
    def upstream(self) -> bool:
        return self.sink_module is None

    def matches(self, module: str, output: str | None, message: MessageView | None) -> bool:
        if self.module is not None and self.module != module:
            return False
        if self.output is not None:
            if self.output != output:
                return False
        elif self.any_output and output is None:
            return False
        if self.condition is not None:
            return message is not None and self.condition(message)
        return True


def parse_route(name: str, text: str) -> Route:
    """Parse one route's text (RouteError names the route and what is wrong)."""
    found = _ROUTE.match(text)
    if found is None:
        raise RouteError(
            f"route {name}: expected 'FROM <source> [WHERE <condition>] INTO <sink>' with sink "
            f'$upstream or BrokeredEndpoint("/modules/<module>/inputs/<input>"), got {text!r}'
        )
    module, output, any_output = _source(name, found.group("source"))
    sink_module: str | None = None
    sink_input: str | None = None
    if found.group("endpoint") is not None:
        endpoint = _ENDPOINT.match(found.group("endpoint"))
        if endpoint is None:
            raise RouteError(
                f"route {name}: BrokeredEndpoint must name /modules/<module>/inputs/<input>, "
                f"got {found.group('endpoint')!r}"
            )
        sink_module, sink_input = endpoint.group("module"), endpoint.group("input")
    condition_text = found.group("condition")
    condition = None
    if condition_text is not None:
        try:
            condition = compile_condition(condition_text)
        except ConditionError as error:
            raise RouteError(f"route {name}: {error}") from None
    return Route(
        name=name,
        text=text,
        module=module,
        output=output,
        any_output=any_output,
        sink_module=sink_module,
        sink_input=sink_input,
        condition_text=condition_text,
        condition=condition,
    )


def _source(name: str, source: str) -> tuple[str | None, str | None, bool]:
    if source in ("/*", "/messages/*", "/messages", "/messages/modules/*"):
        return None, None, False
    found = _MODULE_SOURCE.match(source)
    if found is not None:
        rest = found.group("rest")
        if rest in (None, "", "*"):
            return found.group("module"), None, False
        if rest == "outputs/*":
            return found.group("module"), None, True
        if rest.startswith("outputs/") and re.fullmatch(_NAME, rest[len("outputs/") :]):
            return found.group("module"), rest[len("outputs/") :], True
    raise RouteError(
        f"route {name}: source {source!r} is not one the local edge hub routes (use /messages/*, "
        "/messages/modules/<module>/* or /messages/modules/<module>/outputs/<output|*>)"
    )


def parse_routes(routes: Mapping[str, Any]) -> list[Route]:
    """The ``$edgeHub`` ``routes`` object: name -> text or {route, priority, timeToLiveSecs}."""
    parsed: list[Route] = []
    for name in sorted(routes):
        spec = routes[name]
        priority = 0
        ttl: int | None = None
        if isinstance(spec, Mapping):
            text = spec.get("route")
            priority = _int(name, spec.get("priority", 0), "priority")
            if spec.get("timeToLiveSecs") is not None:
                ttl = _int(name, spec["timeToLiveSecs"], "timeToLiveSecs")
        else:
            text = spec
        if not isinstance(text, str):
            raise RouteError(f"route {name}: the route must be a string")
        route = parse_route(name, text)
        parsed.append(
            Route(
                name=route.name,
                text=route.text,
                module=route.module,
                output=route.output,
                any_output=route.any_output,
                sink_module=route.sink_module,
                sink_input=route.sink_input,
                condition_text=route.condition_text,
                condition=route.condition,
                priority=priority,
                ttl_seconds=ttl,
            )
        )
    return parsed


def _int(name: str, value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise RouteError(f"route {name}: {what} must be a non-negative integer, got {value!r}")
    return value


def check_modules(routes: list[Route], modules: set[str]) -> None:
    """Every module a route names must be one of the deployment's modules."""
    for route in routes:
        for module in (route.module, route.sink_module):
            if module is not None and module not in modules:
                known = ", ".join(sorted(modules)) or "none"
                raise RouteError(
                    f"route {route.name}: unknown module {module!r} (modules: {known})"
                )
