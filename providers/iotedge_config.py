"""The iotedge target's options and a service's ``module:``, declared once
with descriptions (they feed validation and the generated docs), parsed
into what :mod:`modelform.providers.iotedge_manifest` builds a deployment
manifest from, and checked where a schema cannot (file:line diagnostics).

A target is one IoT Edge device::

    targets:
      edge:
        kind: iotedge
        device: line-7
        hub: {connection_string_env: IOTHUB_CONNECTION_STRING}  # absent: local runtime
        registry: 127.0.0.1:15000
        registry_credentials: {acr: {address: x.azurecr.io, username_env: U, password_env: P}}
        runtime: {edge_agent: IMAGE, edge_hub: IMAGE, schema_version: "1.1"}
        modules: {sensor: {image: ..., env: {...}, outputs: [rows]}}   # other modules
        routes: {sensorToModel: FROM /messages/modules/sensor/outputs/rows INTO
                 BrokeredEndpoint("/modules/diabetes/inputs/rows")}

and each service on it is one module (``module:``, every key optional:
name, inputs, outputs, error_output, desired_properties, restart_policy,
create_options, startup_order, routes). Routes may be declared on the
target or on a service (``module.routes``, beside the module they feed):
both go into ``$edgeHub``, names unique across the device. A service's
cpu/memory_gb become createOptions' ``HostConfig.NanoCpus``/``Memory``.

Three checks, each returning diagnostics at the option's file:line:
:func:`check_service` (one service's module and routes, alone),
:func:`check_target` (the target's options, modules and route syntax) and
:func:`check_deployment` (check_target plus what needs the whole device:
duplicate module or route names, routes naming an unknown module or an
input/output the module does not declare). Call check_service for each
service and check_deployment once per target. Values not yet known at plan
time are skipped. No check reads the world: none looks at the environment,
so a hub's connection string is never read or quoted here.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from modelform.plugin import Diagnostic, DiagnosticError, Pos, Resource, is_known, shared_options
from modelform.providers import imagebuild
from modelform.providers import iotedge_manifest as im
from modelform.providers.dockerengine import default_host
from modelform.providers.k8s_config import TARGET_SCHEMA as _KUBERNETES_TARGET

#: A module's name: letters, digits, _ and - (what Microsoft's deployment
#: schema allows), starting with a letter or digit (a container name).
MODULE_NAME = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$"
#: Inputs, outputs and registry credential names.
IO_NAME = r"^[A-Za-z0-9_-]{1,128}$"
ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
#: A device id as IoT Hub allows it.
DEVICE_ID = r"^[A-Za-z0-9\-:.+%_#*?!(),=@;$']{1,128}$"
#: The runtime's own modules: no other module may take their names.
RESERVED = ("edgeAgent", "edgeHub")
DEFAULT_INPUTS = ("input1",)
DEFAULT_OUTPUTS = ("output1",)
DEFAULT_ERROR_OUTPUT = "errors"
BUILD_OPTIONS = ("docker_host", "base_image", "carry_ca")
DEFAULT_HUB_ADDRESS = "127.0.0.1"
GIB = 1024**3
_HINT = "see docs/providers/iotedge.md"

_RESTART = {
    "enum": list(im.RESTART_POLICIES),
    "description": "When the edge agent restarts the module: always (default), on-failure, "
    "on-unhealthy or never (Microsoft notes only always and never act today).",
}
_ENV = {
    "type": "object",
    "additionalProperties": {"type": ["string", "number", "boolean"]},
    "description": "Environment variables of the module (numbers and booleans as text).",
}
_CREATE_OPTIONS = {
    "type": "object",
    "description": "Docker create options, as the manifest has them before they are made a "
    "string (e.g. {HostConfig: {PortBindings: ...}}); at most 4,096 characters as JSON.",
}
_DESIRED = {
    "type": "object",
    "description": "The module twin's desired properties (keys without '.', '$' or spaces; "
    "at most 10 deep and 32 KB). A change reaches the running module without a restart.",
}
_NAMES = {"type": "array", "items": {"type": "string", "minLength": 1}, "uniqueItems": True}
_STARTUP = {
    "type": "integer",
    "minimum": 0,
    "maximum": im.MAX_UINT32,
    "description": "Position in the startup order (0 first; schema_version 1.1).",
}
ROUTES_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "Routes by name, in the edge hub's syntax: FROM <source> [WHERE <condition>] "
    'INTO <sink>, sink $upstream or BrokeredEndpoint("/modules/<module>/inputs/<input>"); or '
    "{route, priority (0 highest … 9), time_to_live_secs}. Names are unique on the device.",
    "additionalProperties": {
        "type": ["string", "object"],
        "properties": {
            "route": {"type": "string"},
            "priority": {"type": "integer", "minimum": 0, "maximum": 9},
            "time_to_live_secs": {"type": "integer", "minimum": 1},
        },
        "required": ["route"],
        "additionalProperties": False,
    },
}
TARGET_MODULE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "A module that is not a modelform service (a sensor, a filter): image, or "
    "script (a Python file built on the base image with azure-iot-device); its env, "
    "create_options, restart_policy, status, desired_properties; inputs and outputs when "
    "routes should be checked against them.",
    "properties": {
        "image": {"type": "string", "minLength": 1, "description": "The module's image."},
        "script": {
            "type": "string",
            "minLength": 1,
            "description": "A Python script run as the module, instead of image.",
        },
        "env": _ENV,
        "create_options": _CREATE_OPTIONS,
        "restart_policy": _RESTART,
        "status": {"enum": list(im.STATUSES), "description": "running (default) or stopped."},
        "desired_properties": _DESIRED,
        "inputs": {**_NAMES, "description": "Its input names (routes to others are errors)."},
        "outputs": {**_NAMES, "description": "Its output names (routes from others are errors)."},
        "startup_order": _STARTUP,
        "image_pull_policy": {
            "enum": list(im.IMAGE_PULL_POLICIES),
            "description": "on-create (the agent's default) or never.",
        },
    },
    "additionalProperties": False,
}
MODULE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "default": {},
    "description": "The service as an IoT Edge module: name (default the service's), inputs "
    "(default [input1]), outputs (default [output1]: results), error_output (default errors: "
    "failed run() calls), desired_properties, restart_policy, create_options, startup_order, "
    "routes (as the target's). See docs/providers/iotedge.md.",
    "properties": {
        "name": {"type": "string", "description": "The module's name (default: the service's)."},
        "inputs": {**_NAMES, "minItems": 1, "description": "Inputs the model reads rows from."},
        "outputs": {**_NAMES, "minItems": 1, "description": "Outputs results are sent to."},
        "error_output": {
            "type": "string",
            "description": f"Where failures of run() go (default {DEFAULT_ERROR_OUTPUT}).",
        },
        "desired_properties": _DESIRED,
        "restart_policy": _RESTART,
        "create_options": _CREATE_OPTIONS,
        "startup_order": _STARTUP,
        "routes": ROUTES_SCHEMA,
    },
    "additionalProperties": False,
}
TARGET_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "device": {
            "type": "string",
            "pattern": DEVICE_ID,
            "description": "The IoT Edge device's id (up to 128 letters, digits and - : . + % _ "
            "# * ? ! ( ) , = @ ; $ ').",
        },
        "hub": {
            "type": "object",
            "description": "Deploy through an IoT Hub: {connection_string_env: NAME}, the "
            "environment variable holding the hub's connection string. Absent: a local edge "
            "runtime on this machine.",
            "properties": {
                "connection_string_env": {
                    "type": "string",
                    "pattern": ENV_NAME,
                    "description": "Name of the environment variable (never the string itself).",
                }
            },
            "required": ["connection_string_env"],
            "additionalProperties": False,
        },
        "registry": {
            "type": "string",
            "pattern": r"^[^\s/:]+(:[0-9]+)?(/\S*)?$",
            "description": "Registry host[:port][/path] module images are pushed to and pulled "
            "from (optional for the local runtime).",
        },
        "registry_credentials": {
            "type": "object",
            "description": "Private registries' credentials by name: {address, username_env, "
            "password_env}; the manifest refers to the variables as ${NAME}, never the values.",
            "additionalProperties": {
                "type": "object",
                "properties": {
                    "address": {"type": "string", "minLength": 1},
                    "username_env": {"type": "string", "pattern": ENV_NAME},
                    "password_env": {"type": "string", "pattern": ENV_NAME},
                },
                "required": ["address", "username_env", "password_env"],
                "additionalProperties": False,
            },
        },
        "runtime": {
            "type": "object",
            "description": f"The edge runtime: edge_agent (default {im.DEFAULT_EDGE_AGENT}), "
            f"edge_hub (default {im.DEFAULT_EDGE_HUB}), schema_version (1.0 or 1.1, default "
            f"{im.DEFAULT_SCHEMA_VERSION}), min_docker_version (default "
            f"{im.DEFAULT_MIN_DOCKER_VERSION}), time_to_live_secs (how long the hub keeps "
            f"undelivered messages, default {im.DEFAULT_TIME_TO_LIVE_SECS}).",
            "properties": {
                "edge_agent": {"type": "string", "minLength": 1},
                "edge_hub": {"type": "string", "minLength": 1},
                "schema_version": {"enum": list(im.SCHEMA_VERSIONS)},
                "min_docker_version": {"type": "string", "minLength": 1},
                "time_to_live_secs": {"type": "integer", "minimum": 1},
            },
            "additionalProperties": False,
        },
        "modules": {
            "type": "object",
            "description": "Other modules of the deployment by name (a sensor feeding the "
            "model): image or script, env, create_options, restart_policy, desired_properties, "
            "inputs, outputs.",
            "additionalProperties": TARGET_MODULE_SCHEMA,
        },
        "routes": ROUTES_SCHEMA,
        "run_as": {
            "enum": ["container", "process"],
            "default": "container",
            "description": "How the local runtime runs modules: containers on the Docker Engine "
            "(default) or processes on this machine.",
        },
        "hub_address": {
            "type": "string",
            "pattern": r"^127\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}$",
            "default": DEFAULT_HUB_ADDRESS,
            "description": "The loopback address the local edge hub listens on (port 8883, "
            "the one azure-iot-device connects to): two local devices on one machine need two "
            f"addresses (127.0.0.2, ...). Default {DEFAULT_HUB_ADDRESS}.",
        },
        "startup_timeout": {
            "type": "number",
            "exclusiveMinimum": 0,
            "default": 120,
            "description": "Seconds apply waits for the local hub and every module to connect.",
        },
        **{k: _KUBERNETES_TARGET["properties"][k] for k in BUILD_OPTIONS},
    },
    "required": ["device"],
    "additionalProperties": False,
}
SERVICE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        **shared_options("cpu", "memory_gb", "resources"),
        "module": MODULE_SCHEMA,
    },
}
#: Keys every target has beside the kind's own options.
_COMMON = ("name", "kind", "description", "digest")


# -- what the options become ---------------------------------------------------------
@dataclass(frozen=True)
class ModuleDecl:
    """A module as the project file declares it: a service's ``module:`` (with
    ``service`` set) or one of the target's ``modules:``. ``inputs`` and
    ``outputs`` None: not declared (routes naming any are accepted).
    ``image`` None: the provider builds it (a service, or a ``script:``)."""

    name: str
    image: str | None = None
    script: str | None = None
    service: str | None = None
    inputs: tuple[str, ...] | None = None
    outputs: tuple[str, ...] | None = None
    error_output: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    create_options: Mapping[str, Any] = field(default_factory=dict)
    restart_policy: str = "always"
    status: str = "running"
    desired_properties: Mapping[str, Any] | None = None
    startup_order: int | None = None
    image_pull_policy: str | None = None
    pos: Pos | None = field(default=None, compare=False)

    def has_input(self, name: str) -> bool:
        return self.inputs is None or name in self.inputs

    def has_output(self, name: str) -> bool:
        return self.outputs is None or name in self.outputs or name == self.error_output

    def all_outputs(self) -> tuple[str, ...]:
        extra = (self.error_output,) if self.error_output else ()
        return (*(self.outputs or ()), *extra)

    def module(self, image: str | None = None, env: Mapping[str, Any] | None = None) -> im.Module:
        """The manifest's module: ``image`` for one the provider built, ``env``
        for the full environment of a service (its environment's and its own)."""
        ref = image or self.image
        if not ref:
            raise im.ManifestError(f"module {self.name}: no image yet (it is built at apply)")
        return im.Module(
            name=self.name,
            image=ref,
            status=self.status,
            restart_policy=self.restart_policy,
            create_options=dict(self.create_options),
            env={k: str(v) for k, v in (self.env if env is None else env).items()},
            desired_properties=self.desired_properties,
            startup_order=self.startup_order,
            image_pull_policy=self.image_pull_policy,
        )


@dataclass(frozen=True)
class RouteDecl:
    """A route as declared: its manifest form; ``owner`` (``targets.edge``
    or ``services.api``) and ``path`` under it (``("routes", "r")``,
    ``("module", "routes", "r")``) say where; ``pos`` is its position."""

    spec: im.RouteSpec
    owner: str
    path: tuple[str, ...]
    pos: Pos | None = field(default=None, compare=False)

    @property
    def where(self) -> str:
        """``targets.edge.routes.r``: the route in the project file's words."""
        return ".".join((self.owner, *self.path))


@dataclass(frozen=True)
class Options:
    device: str
    hub_connection_string_env: str | None
    registry: str | None
    runtime: im.Runtime
    modules: tuple[ModuleDecl, ...]
    routes: tuple[RouteDecl, ...]
    run_as: str
    docker_host: str
    base_image: str
    carry_ca: bool | str | None
    hub_address: str = DEFAULT_HUB_ADDRESS
    startup_timeout: float = 120.0

    @property
    def hub_mode(self) -> bool:
        """True when apply goes through an IoT Hub, False for the local runtime."""
        return self.hub_connection_string_env is not None


PosOf = Callable[..., Pos | None]


def _no_pos(*_: Any) -> Pos | None:
    return None


def _mapping(value: Any) -> Mapping[str, Any]:
    """``value`` when it is a mapping; ``{}`` when absent or not yet known."""
    return value if isinstance(value, Mapping) else {}


def _names(value: Any) -> tuple[str, ...] | None:
    return None if value is None else tuple(str(v) for v in value)


def _route_decls(
    routes: Any, owner: str, prefix: tuple[str, ...], pos_of: PosOf
) -> list[RouteDecl]:
    out = []
    for name, value in _mapping(routes).items():
        if isinstance(value, Mapping):
            spec = im.RouteSpec(
                str(name),
                value.get("route", ""),
                value.get("priority"),
                value.get("time_to_live_secs"),
            )
        else:
            spec = im.RouteSpec(str(name), value)
        out.append(RouteDecl(spec, owner, (*prefix, str(name)), pos_of(name)))
    return out


def _target_module(name: str, m: Mapping[str, Any], pos: Pos | None) -> ModuleDecl:
    return ModuleDecl(
        name=name,
        image=m.get("image"),
        script=m.get("script"),
        inputs=_names(m.get("inputs")),
        outputs=_names(m.get("outputs")),
        env={k: v if not is_known(v) else str(v) for k, v in _mapping(m.get("env")).items()},
        create_options=dict(_mapping(m.get("create_options"))),
        restart_policy=str(m.get("restart_policy") or "always"),
        status=str(m.get("status") or "running"),
        desired_properties=m.get("desired_properties"),
        startup_order=m.get("startup_order"),
        image_pull_policy=m.get("image_pull_policy"),
        pos=pos,
    )


def runtime_of(target: Mapping[str, Any]) -> im.Runtime:
    """The manifest's runtime from the target's ``runtime:`` and credentials."""
    rt = _mapping(target.get("runtime"))
    creds = tuple(
        im.RegistryCredential(str(n), c["address"], c["username_env"], c["password_env"])
        for n, c in sorted(_mapping(target.get("registry_credentials")).items())
    )
    return im.Runtime(
        edge_agent=rt.get("edge_agent") or im.DEFAULT_EDGE_AGENT,
        edge_hub=rt.get("edge_hub") or im.DEFAULT_EDGE_HUB,
        schema_version=str(rt.get("schema_version") or im.DEFAULT_SCHEMA_VERSION),
        min_docker_version=rt.get("min_docker_version") or im.DEFAULT_MIN_DOCKER_VERSION,
        time_to_live_secs=int(rt.get("time_to_live_secs") or im.DEFAULT_TIME_TO_LIVE_SECS),
        registry_credentials=creds,
    )


def options(target: dict[str, Any], pos: Pos | None = None) -> Options:
    """The target's options (the loader has checked them against the schema)."""
    own = {k: v for k, v in target.items() if k not in _COMMON}
    unknown = sorted(set(own) - set(TARGET_SCHEMA["properties"]))
    if unknown:
        raise DiagnosticError(
            Diagnostic(
                f"target {target.get('name', '?')} (iotedge): unknown option {unknown[0]}",
                pos,
                _HINT,
            )
        )
    hub = own.get("hub")
    name = str(target.get("name", "?"))
    return Options(
        device=str(own.get("device") or ""),
        hub_connection_string_env=hub.get("connection_string_env")
        if isinstance(hub, Mapping)
        else None,
        registry=(own.get("registry") or "").rstrip("/") or None,
        runtime=runtime_of(own),
        modules=tuple(
            _target_module(str(n), m, pos) for n, m in sorted(_mapping(own.get("modules")).items())
        ),
        routes=tuple(
            _route_decls(own.get("routes"), f"targets.{name}", ("routes",), lambda _: pos)
        ),
        run_as=str(own.get("run_as") or "container"),
        docker_host=own.get("docker_host") or default_host(),
        base_image=own.get("base_image") or imagebuild.DEFAULT_BASE_IMAGE,
        carry_ca=own.get("carry_ca"),
        hub_address=str(own.get("hub_address") or DEFAULT_HUB_ADDRESS),
        startup_timeout=float(own.get("startup_timeout") or 120),
    )


def _resources(config: Mapping[str, Any]) -> dict[str, Any]:
    """HostConfig limits from the service's cpu/memory_gb (or resources:)."""
    res = config.get("resources") or {}
    cpu = config.get("cpu", res.get("cpu"))
    memory = config.get("memory_gb", res.get("memory_gb"))
    out: dict[str, Any] = {}
    if cpu is not None and is_known(cpu):
        out["NanoCpus"] = int(round(float(cpu) * 1e9))
    if memory is not None and is_known(memory):
        out["Memory"] = out["MemorySwap"] = int(float(memory) * GIB)
    return out


def service_module(name: str, config: Mapping[str, Any], pos: Pos | None = None) -> ModuleDecl:
    """A service's module, its defaults filled in: named as the service,
    inputs [input1], outputs [output1], error output errors; the service's
    env; its cpu/memory as HostConfig limits in the create options."""
    m = _mapping(config.get("module"))
    create = dict(_mapping(m.get("create_options")))
    limits = _resources(config)
    if limits:
        host = dict(_mapping(create.get("HostConfig")))
        create["HostConfig"] = {**host, **limits}
    return ModuleDecl(
        name=str(m.get("name") or name),
        service=name,
        inputs=_names(m.get("inputs")) or DEFAULT_INPUTS,
        outputs=_names(m.get("outputs")) or DEFAULT_OUTPUTS,
        error_output=str(m.get("error_output") or DEFAULT_ERROR_OUTPUT),
        env={k: v if not is_known(v) else str(v) for k, v in _mapping(config.get("env")).items()},
        create_options=create,
        restart_policy=str(m.get("restart_policy") or "always"),
        desired_properties=m.get("desired_properties"),
        startup_order=m.get("startup_order"),
        pos=pos,
    )


def service_routes(
    name: str, config: Mapping[str, Any], pos_of: PosOf = _no_pos
) -> list[RouteDecl]:
    """The routes a service declares (``module.routes``); ``pos_of(route)``
    gives each one's position."""
    return _route_decls(
        _mapping(config.get("module")).get("routes"),
        f"services.{name}",
        ("module", "routes"),
        pos_of,
    )


def module_of(resource: Resource) -> ModuleDecl:
    """A service resource's module, at the position of its ``module.name``
    (else of ``module:``, else of the service)."""
    return service_module(resource.name, resource.config, resource.option_pos("module", "name"))


def routes_of(resource: Resource) -> list[RouteDecl]:
    """The routes of a service resource, or of a target resource (its
    ``routes:``), each at its position."""
    if resource.type == "service":
        return service_routes(
            resource.name,
            resource.config,
            lambda n: resource.option_pos("module", "routes", n),
        )
    return _route_decls(
        resource.config.get("routes"),
        f"targets.{resource.name}",
        ("routes",),
        lambda n: resource.option_pos("routes", n),
    )


def target_modules(resource: Resource) -> list[ModuleDecl]:
    """The target's own ``modules:``, each at its position."""
    return [
        _target_module(str(n), m, resource.option_pos("modules", n))
        for n, m in sorted(_mapping(resource.config.get("modules")).items())
    ]


def specs(target: Options, services: Sequence[Resource]) -> list[im.RouteSpec]:
    """Every route of the device (the target's and its services'), for
    :func:`modelform.providers.iotedge_manifest.manifest`."""
    return [r.spec for r in target.routes] + [r.spec for s in services for r in routes_of(s)]


# -- checks ----------------------------------------------------------------------------
class _Checks:
    """Diagnostics gathered for one resource, each at a position under it."""

    def __init__(self, resource: Resource) -> None:
        self.r = resource
        self.section = "services" if resource.type == "service" else "targets"
        self.out: list[Diagnostic] = []

    def error(self, path: tuple[str | int, ...], message: str, hint: str | None = None) -> None:
        where = ".".join(str(p) for p in (self.section, self.r.name, *path))
        self.out.append(Diagnostic(f"{where}: {message}", self.r.option_pos(*path), hint))

    def name(self, path: tuple[str | int, ...], value: Any, rule: str, what: str) -> bool:
        if not isinstance(value, str) or not is_known(value):
            return False
        if not re.match(rule, value):
            start = ", starting with a letter or digit" if rule == MODULE_NAME else ""
            self.error(path, f"{what} {value!r} is not valid: use letters, digits, _ and -{start}")
            return False
        return True

    def module_name(self, path: tuple[str | int, ...], value: Any) -> None:
        if not self.name(path, value, MODULE_NAME, "module name"):
            return
        if value.lower() in (r.lower() for r in RESERVED):
            self.error(path, f"module name {value!r} is the edge runtime's own", "pick another")

    def choice(self, path: tuple[str | int, ...], value: Any, allowed: Sequence[str]) -> None:
        """An enum the loader could not check (its value came from a reference)."""
        if value is None or not is_known(value) or value in allowed:
            return
        close = _close(str(value), allowed)
        self.error(
            path,
            f"{value!r} is not one of: {', '.join(allowed)}",
            f'did you mean "{close}"?' if close else None,
        )

    def policies(self, path: tuple[str, ...], m: Mapping[str, Any]) -> None:
        self.choice((*path, "restart_policy"), m.get("restart_policy"), im.RESTART_POLICIES)
        self.choice((*path, "status"), m.get("status"), im.STATUSES)
        self.choice(
            (*path, "image_pull_policy"), m.get("image_pull_policy"), im.IMAGE_PULL_POLICIES
        )

    def io(self, path: tuple[str | int, ...], values: Any, what: str) -> None:
        if not isinstance(values, list) or not is_known(values):
            return
        for i, v in enumerate(values):
            self.name((*path, i), v, IO_NAME, what)

    def desired(self, path: tuple[str | int, ...], value: Any) -> None:
        if not isinstance(value, Mapping) or not is_known(value):
            return
        for problem in im.twin_problems(value):
            self.error(path, f"desired properties: {problem}", "IoT Hub refuses such twins")

    def create_options(self, path: tuple[str | int, ...], value: Any) -> None:
        if not isinstance(value, Mapping) or not is_known(value):
            return
        try:
            im.split_create_options(value)
        except (im.ManifestError, TypeError, ValueError) as e:
            self.error(path, str(e))

    def env(self, path: tuple[str | int, ...], value: Any) -> None:
        for key in value if isinstance(value, Mapping) else {}:
            if re.search(r"[+#$\s.]", str(key)):
                self.error(
                    (*path, key),
                    f"environment variable {key!r}: a module's variable names have no "
                    "+, #, $, . or spaces",
                )

    def routes(self, routes: list[RouteDecl], schema_version: str) -> None:
        for decl in routes:
            spec = decl.spec
            if not is_known(spec.route):
                continue
            bad = im.twin_problems({spec.name: 0})
            if bad:
                self.error(decl.path, f"route name: {bad[0]}")
            try:
                im.parse_route(spec.route)
            except im.RouteError as e:
                self.error(
                    decl.path,
                    f"invalid route: {e}",
                    "FROM <source> [WHERE <condition>] INTO <sink>",
                )
            if schema_version == "1.0" and not isinstance(spec.value(), str):
                self.error(
                    decl.path, "priority and time_to_live_secs need runtime.schema_version 1.1"
                )


def _schema_version(target: Mapping[str, Any]) -> str:
    version = _mapping(target.get("runtime")).get("schema_version")
    return str(version) if isinstance(version, str) else im.DEFAULT_SCHEMA_VERSION


def _hub(c: _Checks, hub: Any) -> None:
    example = "hub: {connection_string_env: IOTHUB_CONNECTION_STRING}"
    env = hub.get("connection_string_env") if isinstance(hub, Mapping) else None
    if env is None:
        c.error(
            ("hub",),
            "hub needs the name of the environment variable that holds the IoT Hub "
            "connection string",
            example,
        )
        return
    if not isinstance(env, str) or not is_known(env):
        return
    if "=" in env or ";" in env:
        c.error(
            ("hub", "connection_string_env"),
            "expected the name of an environment variable, not a connection string (not shown)",
            example,
        )
    elif not re.match(ENV_NAME, env):
        c.error(("hub", "connection_string_env"), f"{env!r} is not an environment variable name")


def check_target(resource: Resource) -> list[Diagnostic]:
    """Diagnostics for a target's own options (``resource.config`` is the
    target, positions under it): a hub without the name of its variable, or
    with a connection string in its place; a registry address with a
    scheme; each module's name, image or script, inputs and outputs,
    policies, twin, createOptions size and env names; each route's name and
    syntax; startup order, priority and time to live under schema 1.0."""
    c = _Checks(resource)
    t = resource.config
    if "hub" in t and is_known(t["hub"]):
        _hub(c, t["hub"])
    for name, cred in _mapping(t.get("registry_credentials")).items():
        c.name(("registry_credentials", name), name, IO_NAME, "registry credentials name")
        address = cred.get("address") if isinstance(cred, Mapping) else None
        if isinstance(address, str) and "://" in address:
            c.error(
                ("registry_credentials", name, "address"),
                f"address {address!r}: write the registry's host without a scheme",
                "e.g. myacr.azurecr.io",
            )
    version = _schema_version(t)
    c.choice(
        ("runtime", "schema_version"),
        _mapping(t.get("runtime")).get("schema_version"),
        im.SCHEMA_VERSIONS,
    )
    for name, m in _mapping(t.get("modules")).items():
        path: tuple[str, ...] = ("modules", name)
        c.module_name(path, name)
        if not isinstance(m, Mapping):
            continue
        if ("image" in m) == ("script" in m):
            c.error(path, "a module has either image: or script:", "image: REF or script: FILE")
        c.policies(path, m)
        c.io((*path, "inputs"), m.get("inputs"), "input name")
        c.io((*path, "outputs"), m.get("outputs"), "output name")
        c.desired((*path, "desired_properties"), m.get("desired_properties"))
        c.create_options((*path, "create_options"), m.get("create_options"))
        c.env((*path, "env"), m.get("env"))
        if version == "1.0" and m.get("startup_order") is not None:
            c.error((*path, "startup_order"), "startup_order needs runtime.schema_version 1.1")
    c.routes(routes_of(resource), version)
    return c.out


def check_service(resource: Resource, target: Mapping[str, Any]) -> list[Diagnostic]:
    """Diagnostics for one service's ``module:`` (and its ``env``), against
    its ``target`` (the target's options, ``ctx.target``): the module's
    name (also: one of the target's modules already has it), inputs,
    outputs and error output, restart policy, twin, createOptions (cpu and
    memory_gb merged in: set each in one place), env names, its routes'
    names (also: the target already has one) and syntax, and what schema
    1.0 cannot carry. Other services are :func:`check_deployment`'s."""
    c = _Checks(resource)
    cfg = resource.config
    m = _mapping(cfg.get("module"))
    if not is_known(m.get("name", "")):
        return c.out
    decl = service_module(resource.name, cfg)
    name_path = ("module", "name") if "name" in m else ("module",)
    c.module_name(name_path, decl.name)
    if decl.name in _mapping(target.get("modules")):
        c.error(
            name_path,
            f"module {decl.name!r} is also one of the target's modules",
            "two modules of one device need two names (module.name renames this one)",
        )
    c.io(("module", "inputs"), m.get("inputs"), "input name")
    c.io(("module", "outputs"), m.get("outputs"), "output name")
    if "error_output" in m:
        ok = c.name(("module", "error_output"), m["error_output"], IO_NAME, "output name")
        if ok and decl.error_output in (decl.outputs or ()):
            c.error(
                ("module", "error_output"),
                f"{decl.error_output!r} is also a result output: failures would look like results",
            )
    c.choice(("module", "restart_policy"), m.get("restart_policy"), im.RESTART_POLICIES)
    c.desired(("module", "desired_properties"), m.get("desired_properties"))
    given = _mapping(m.get("create_options")).get("HostConfig")
    host: Mapping[str, Any] = given if isinstance(given, Mapping) else {}
    limits = _resources(cfg)
    for key in sorted(set(limits) & set(host)):
        if key == "MemorySwap" and "Memory" in host:
            continue  # said once, for Memory
        c.error(
            ("module", "create_options", "HostConfig", key),
            f"HostConfig.{key} is set here and by the service's "
            f"{'cpu' if key == 'NanoCpus' else 'memory_gb'}: set it in one place",
        )
    c.create_options(("module", "create_options"), decl.create_options)
    c.env(("env",), cfg.get("env"))
    version = _schema_version(target)
    if version == "1.0" and m.get("startup_order") is not None:
        c.error(("module", "startup_order"), "startup_order needs runtime.schema_version 1.1")
    own = routes_of(resource)
    c.routes(own, version)
    for r in own:
        if r.spec.name in _mapping(target.get("routes")):
            c.error(r.path, f"route {r.spec.name!r} is also one of the target's routes")
    return c.out


def _close(name: str, choices: Sequence[str]) -> str | None:
    got = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return got[0] if got else None


def _unknown_module(name: str, modules: Mapping[str, ModuleDecl]) -> tuple[str, str]:
    close = _close(name, list(modules))
    msg = f"names module {name!r}, which is not in the deployment"
    if close:
        msg += f' (did you mean "{close}"?)'
    return msg, f"its modules: {', '.join(sorted(modules)) or 'none'}"


def _missing(what: str, module: ModuleDecl, name: str, have: Sequence[str]) -> tuple[str, str]:
    close = _close(name, have)
    msg = f"module {module.name} has no {what} {name!r}"
    if close:
        msg += f' (did you mean "{close}"?)'
    where = (
        f"services.{module.service}.module.{what}s"
        if module.service
        else f"the target's modules.{module.name}.{what}s"
    )
    return msg, f"its {what}s: {', '.join(have) or 'none'}; declare it in {where}"


def _references(route: RouteDecl, modules: Mapping[str, ModuleDecl]) -> list[tuple[str, str]]:
    """(message, hint) for each module, input or output a route names that
    the deployment does not have."""
    try:
        r = im.parse_route(route.spec.route)
    except (im.RouteError, TypeError):
        return []  # said by check_target / check_service
    out = []
    if r.module is not None:
        src = modules.get(r.module)
        if src is None:
            out.append(_unknown_module(r.module, modules))
        elif r.output not in (None, "*") and not src.has_output(r.output):
            out.append(_missing("output", src, r.output, src.all_outputs()))
    if r.sink_module is not None and r.sink_input is not None:
        dst = modules.get(r.sink_module)
        if dst is None:
            out.append(_unknown_module(r.sink_module, modules))
        elif not dst.has_input(r.sink_input):
            out.append(_missing("input", dst, r.sink_input, dst.inputs or ()))
    return out


def check_deployment(target: Resource, services: Sequence[Resource]) -> list[Diagnostic]:
    """What needs the whole device, after :func:`check_target` (included):
    two services' modules of one name, two services' routes of one name
    (against the target's: :func:`check_service`), and each route, the
    target's or a service's, naming a module the deployment lacks or an
    input or output that module does not declare. ``target``'s config is
    the target's options; ``services`` the services deployed to it, each
    with its positions (or none). With check_service on each service, every
    problem is said once."""
    out = check_target(target)
    mine = target_modules(target)
    modules: dict[str, ModuleDecl] = {d.name: d for d in mine}
    for s in services:
        if not is_known(_mapping(s.config.get("module")).get("name", "")):
            continue
        d = module_of(s)
        first = modules.get(d.name)
        if first is None:
            modules[d.name] = d
        elif first.service is not None:  # the target's: check_service said it
            out.append(
                Diagnostic(
                    f"services.{d.service}.module: module {d.name!r} is also service "
                    f"{first.service}'s",
                    d.pos,
                    "two modules of one device need two names (module.name renames one)",
                )
            )
    seen = {r.spec.name: r for r in routes_of(target)}
    for route in [r for s in services for r in routes_of(s)]:
        first_route = seen.setdefault(route.spec.name, route)
        if first_route is not route and first_route.owner != f"targets.{target.name}":
            out.append(
                Diagnostic(
                    f"{route.where}: route {route.spec.name!r} is also declared at "
                    f"{first_route.where}",
                    route.pos,
                )
            )
    for route in routes_of(target) + [r for s in services for r in routes_of(s)]:
        for message, hint in _references(route, modules):
            out.append(Diagnostic(f"{route.where}: {message}", route.pos, hint))
    return out
