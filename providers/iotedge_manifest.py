"""An IoT Edge device's deployment manifest, built from its modules and
routes: pure functions, no I/O, the same bytes for the same inputs.

The manifest is the documented JSON document an IoT Edge device runs
(``providers/schemas/deployment.schema.json`` cites the pages)::

    {"modulesContent": {
        "$edgeAgent": {"properties.desired": {schemaVersion, runtime, systemModules, modules}},
        "$edgeHub": {"properties.desired": {schemaVersion, routes, storeAndForwardConfiguration}},
        "<module>": {"properties.desired": {...}}}}          # module twins, when declared

What this module decides, and why:

* ``createOptions`` is Docker's create options as a JSON *string*, compact,
  keys sorted, ASCII only (so characters and bytes agree); past 512
  characters it is cut into ``createOptions``, ``createOptions01`` …
  ``createOptions07`` (at most 8 parts, 4,096 characters), the way
  Microsoft's iotedgedev tool and the portal write it and the edge agent
  joins it. :func:`split_create_options` and :func:`join_create_options`
  round-trip.
* Registry credentials are written *by reference*: ``"${NAME}"`` names the
  environment variable holding the user name or password (iotedgedev's
  template convention), so a manifest, its digest and the state never hold
  a secret. :func:`with_credentials` fills them in just before a manifest
  is sent to a hub.
* Deterministic: modules and routes are emitted sorted; :func:`canonical_json`
  sorts keys and has no whitespace; :func:`manifest_digest` hashes it.
* :func:`parse_route` reads the hub's route syntax; :func:`changes` and
  :func:`diff` name what differs between two manifests, module by module,
  for plans (``module diabetes: image diabetes:2 → diabetes:3``).

Never put a secret in a module's env or desired properties here: both are
written as they are. This module must not import the engine or another
provider; only :mod:`modelform.plugin`.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from functools import cache
from importlib import resources
from typing import Any

from modelform.plugin import is_known

DEFAULT_EDGE_AGENT = "mcr.microsoft.com/azureiotedge-agent:1.5"
DEFAULT_EDGE_HUB = "mcr.microsoft.com/azureiotedge-hub:1.5"
SCHEMA_VERSIONS = ("1.0", "1.1")
DEFAULT_SCHEMA_VERSION = "1.1"
DEFAULT_MIN_DOCKER_VERSION = "v1.25"
#: How long the edge hub keeps a message it cannot deliver (storeAndForwardConfiguration).
DEFAULT_TIME_TO_LIVE_SECS = 7200
RESTART_POLICIES = ("always", "on-failure", "on-unhealthy", "never")
STATUSES = ("running", "stopped")
IMAGE_PULL_POLICIES = ("on-create", "never")
#: A createOptions part is at most this many characters; at most MAX_PARTS parts.
CHUNK = 512
MAX_PARTS = 8
MAX_UINT32 = 4294967295
UPSTREAM = "$upstream"
#: Ports the edge hub publishes for downstream devices (MQTT, AMQP, HTTPS), as
#: Microsoft's documentation gives every edgeHub module.
EDGE_HUB_CREATE_OPTIONS: dict[str, Any] = {
    "HostConfig": {
        "PortBindings": {
            "443/tcp": [{"HostPort": "443"}],
            "5671/tcp": [{"HostPort": "5671"}],
            "8883/tcp": [{"HostPort": "8883"}],
        }
    }
}
_PART = re.compile(r"^createOptions(0[1-9]|[1-9][0-9])$")
_REF = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")


class ManifestError(ValueError):
    """A manifest cannot be made or read: one line for the user."""


class RouteError(ManifestError):
    """A route is not in the hub's route syntax."""


@dataclass(frozen=True)
class RegistryCredential:
    """A private registry's credentials, by the names of the environment
    variables that hold them (``registryCredentials.<name>``)."""

    name: str
    address: str
    username_env: str
    password_env: str


@dataclass(frozen=True)
class Runtime:
    """The edge runtime: ``$edgeAgent``'s runtime and system modules, and
    ``$edgeHub``'s store-and-forward time to live."""

    edge_agent: str = DEFAULT_EDGE_AGENT
    edge_hub: str = DEFAULT_EDGE_HUB
    schema_version: str = DEFAULT_SCHEMA_VERSION
    min_docker_version: str = DEFAULT_MIN_DOCKER_VERSION
    time_to_live_secs: int = DEFAULT_TIME_TO_LIVE_SECS
    registry_credentials: tuple[RegistryCredential, ...] = ()


@dataclass(frozen=True)
class Module:
    """One module of the deployment (``$edgeAgent``'s ``modules.<name>``, and
    its twin's desired properties when set: None writes no twin, ``{}`` an
    empty one)."""

    name: str
    image: str
    version: str = "1.0"
    status: str = "running"
    restart_policy: str = "always"
    create_options: Mapping[str, Any] = field(default_factory=dict)
    env: Mapping[str, str] = field(default_factory=dict)
    desired_properties: Mapping[str, Any] | None = None
    startup_order: int | None = None
    image_pull_policy: str | None = None


@dataclass(frozen=True)
class RouteSpec:
    """A named route of ``$edgeHub``: the route text, and with schema 1.1 its
    priority (0 highest … 9) and time to live."""

    name: str
    route: str
    priority: int | None = None
    time_to_live_secs: int | None = None

    def value(self) -> str | dict[str, Any]:
        """The route as the manifest writes it: the text, or an object when
        it has a priority or a time to live."""
        if self.priority is None and self.time_to_live_secs is None:
            return self.route
        out: dict[str, Any] = {"route": self.route}
        if self.priority is not None:
            out["priority"] = self.priority
        if self.time_to_live_secs is not None:
            out["timeToLiveSecs"] = self.time_to_live_secs
        return out


# -- routes -----------------------------------------------------------------------
#: A name in a route's source or endpoint: the hub grammar's identifier characters.
_ID = r"[^()<>@,;:\\\"/\[\]?={}\s*']+"
_SOURCES = (
    (re.compile(r"/\*"), "all"),
    (re.compile(r"/twinChangeNotifications"), "twin"),
    (re.compile(r"/messages/\*"), "messages"),
    (re.compile(r"/messages/modules/\*"), "modules"),
    (re.compile(rf"/messages/modules/(?P<module>{_ID})/\*"), "module"),
    (re.compile(rf"/messages/modules/(?P<module>{_ID})/outputs/(?P<output>\*|{_ID})"), "output"),
)
_ENDPOINT = re.compile(rf"/modules/(?P<module>{_ID})/inputs/(?P<input>{_ID})")
_SINK_CALL = re.compile(r"(?P<func>[A-Za-z_][A-Za-z0-9_]*)\s*\(\s*(?P<arg>.*?)\s*\)", re.DOTALL)
SOURCE_FORMS = (
    "/*",
    "/twinChangeNotifications",
    "/messages/*",
    "/messages/modules/*",
    "/messages/modules/<module>/*",
    "/messages/modules/<module>/outputs/*",
    "/messages/modules/<module>/outputs/<output>",
)
SINK_FORMS = ("$upstream", 'BrokeredEndpoint("/modules/<module>/inputs/<input>")')


@dataclass(frozen=True)
class Route:
    """A parsed route. ``module`` is the source module (None: any module or
    device); ``output`` its output: a name, ``"*"`` (any output), or None
    (through some output or none); ``sink_module``/``sink_input`` the
    endpoint, both None for ``$upstream``; ``condition`` the WHERE text."""

    source: str
    kind: str
    module: str | None
    output: str | None
    sink_module: str | None
    sink_input: str | None
    condition: str | None

    @property
    def upstream(self) -> bool:
        return self.sink_module is None

    def matches(self, module: str, output: str | None) -> bool:
        """Whether a message a module sent (through ``output``, or none)
        comes from this route's source. The condition is not evaluated."""
        if self.kind == "twin":
            return False
        if self.module is None:
            return True
        if self.module != module:
            return False
        if self.output is None:
            return True
        if self.output == "*":
            return output is not None
        return self.output == output


def _mask_strings(text: str) -> str:
    """``text`` with the inside of each quoted string blanked (same length),
    so keywords are found outside them only."""
    out = list(text)
    quote: str | None = None
    i = 0
    while i < len(text):
        c = text[i]
        if quote is None:
            if c in "\"'":
                quote = c
        elif c == "\\":
            out[i] = "_"
            if i + 1 < len(text):
                out[i + 1] = "_"
            i += 1
        elif c == quote:
            quote = None
        else:
            out[i] = "_"
        i += 1
    if quote is not None:
        raise RouteError(f"an unterminated string (a {quote} without its pair)")
    return "".join(out)


def _condition(text: str, masked: str) -> str:
    condition = text.strip()
    if not condition:
        raise RouteError("WHERE without a condition")
    depth = 0
    for c in masked:
        depth += (c == "(") - (c == ")")
        if depth < 0:
            raise RouteError(f"a ) without its ( in the condition {condition!r}")
    if depth:
        raise RouteError(f"a ( without its ) in the condition {condition!r}")
    return condition


def _source(source: str) -> tuple[str, str | None, str | None]:
    for pattern, kind in _SOURCES:
        m = pattern.fullmatch(source)
        if m:
            groups = m.groupdict()
            return kind, groups.get("module"), groups.get("output")
    raise RouteError(f"unknown source {source!r}; sources: {', '.join(SOURCE_FORMS)}")


def _sink(sink: str) -> tuple[str | None, str | None]:
    if sink == UPSTREAM:
        return None, None
    call = _SINK_CALL.fullmatch(sink)
    if call is None:
        raise RouteError(f"unknown sink {sink!r}; sinks: {', '.join(SINK_FORMS)}")
    if call["func"] != "BrokeredEndpoint":
        raise RouteError(f"unknown endpoint {call['func']}(...); sinks: {', '.join(SINK_FORMS)}")
    arg = call["arg"]
    if len(arg) < 2 or arg[0] not in "\"'" or arg[-1] != arg[0]:
        raise RouteError('BrokeredEndpoint takes a quoted path: "/modules/<module>/inputs/<input>"')
    endpoint = _ENDPOINT.fullmatch(arg[1:-1])
    if endpoint is None:
        raise RouteError(
            f"endpoint {arg[1:-1]!r} is not a module input; write /modules/<module>/inputs/<input>"
        )
    return endpoint["module"], endpoint["input"]


def parse_route(text: str) -> Route:
    """Read a route in the edge hub's syntax::

        [SELECT *] FROM <source> [WHERE <condition>] INTO <sink>

    Keywords in any case; sources and sinks as documented (``SOURCE_FORMS``,
    ``SINK_FORMS``). Raises :class:`RouteError` with one line saying what is
    wrong. The condition is kept as text (IoT Hub query language), checked
    only for balanced quotes and parentheses."""
    if not isinstance(text, str) or not text.strip():
        raise RouteError("a route is empty; write FROM <source> INTO <sink>")
    masked = _mask_strings(text)
    head = re.match(r"\s*(?:SELECT\s+\*\s+)?FROM\s+(?P<source>\S+)", masked, re.IGNORECASE)
    if head is None:
        raise RouteError("a route starts with FROM <source>, e.g. FROM /messages/* INTO $upstream")
    into = [m for m in re.finditer(r"\sINTO\s", masked, re.IGNORECASE) if m.start() >= head.end()]
    if not into:
        raise RouteError("a route ends with INTO <sink> ($upstream or BrokeredEndpoint(...))")
    last = into[-1]
    source = text[head.start("source") : head.end("source")]
    middle, masked_middle = text[head.end() : last.start()], masked[head.end() : last.start()]
    condition = None
    if middle.strip():
        where = re.match(r"\s*WHERE(\s|$)", masked_middle, re.IGNORECASE)
        if where is None:
            raise RouteError(
                f"unexpected {middle.strip()!r} after the source (a condition starts with WHERE)"
            )
        condition = _condition(middle[where.end() :], masked_middle[where.end() :])
    sink = text[last.end() :].strip()
    if not sink:
        raise RouteError("INTO without a sink ($upstream or BrokeredEndpoint(...))")
    kind, module, output = _source(source)
    sink_module, sink_input = _sink(sink)
    return Route(source, kind, module, output, sink_module, sink_input, condition)


# -- createOptions ------------------------------------------------------------------
def create_options_text(options: Mapping[str, Any]) -> str:
    """Docker create options as the manifest's JSON string: compact, keys
    sorted, ASCII (``{}`` when there are none)."""
    return json.dumps(
        dict(options), sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    )


def split_create_options(options: Mapping[str, Any]) -> dict[str, str]:
    """``{"createOptions": …, "createOptions01": …}``: the options' string
    cut into parts of at most 512 characters. Raises :class:`ManifestError`
    past 8 parts (4,096 characters)."""
    text = create_options_text(options)
    parts = [text[i : i + CHUNK] for i in range(0, len(text), CHUNK)] or [""]
    if len(parts) > MAX_PARTS:
        raise ManifestError(
            f"createOptions is {len(text)} characters as JSON; a module's createOptions "
            f"holds at most {CHUNK * MAX_PARTS} ({MAX_PARTS} parts of {CHUNK})"
        )
    return {
        ("createOptions" if i == 0 else f"createOptions{i:02d}"): p for i, p in enumerate(parts)
    }


def join_create_options(settings: Mapping[str, Any]) -> dict[str, Any]:
    """The create options a module's ``settings`` carry, its parts joined in
    order (``createOptions`` then ``createOptions01``, ``02`` …): a mapping,
    ``{}`` when there are none. Raises :class:`ManifestError` on a missing
    part, a part over 512 characters or text that is not a JSON object."""
    first = settings.get("createOptions")
    numbers = sorted(int(m[1]) for k in settings if (m := _PART.match(k)))
    if first is None:
        if numbers:
            raise ManifestError("createOptions01 and on without createOptions")
        return {}
    if numbers != list(range(1, len(numbers) + 1)):
        missing = next(i for i in range(1, len(numbers) + 2) if i not in numbers)
        raise ManifestError(f"createOptions{missing:02d} is missing between its parts")
    parts = [first, *(settings[f"createOptions{n:02d}"] for n in numbers)]
    for i, part in enumerate(parts):
        name = "createOptions" if i == 0 else f"createOptions{i:02d}"
        if not isinstance(part, str):
            raise ManifestError(f"{name} is not a string")
        if len(part) > CHUNK:
            raise ManifestError(f"{name} is {len(part)} characters; a part holds at most {CHUNK}")
    text = "".join(parts).strip()
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError as e:
        raise ManifestError(f"createOptions is not JSON: {e}") from None
    if not isinstance(value, dict):
        raise ManifestError("createOptions is not a JSON object")
    return value


# -- building -----------------------------------------------------------------------
def _ref(env: str) -> str:
    return "${" + env + "}"


def _module_entry(m: Module, schema_version: str) -> dict[str, Any]:
    for value, allowed, what in (
        (m.status, STATUSES, "status"),
        (m.restart_policy, RESTART_POLICIES, "restart policy"),
    ):
        if value not in allowed:
            raise ManifestError(f"module {m.name}: {what} {value!r} is not one of {allowed}")
    if m.image_pull_policy is not None and m.image_pull_policy not in IMAGE_PULL_POLICIES:
        raise ManifestError(f"module {m.name}: image pull policy {m.image_pull_policy!r}")
    try:
        parts = split_create_options(m.create_options)
    except ManifestError as e:
        raise ManifestError(f"module {m.name}: {e}") from None
    entry: dict[str, Any] = {
        "restartPolicy": m.restart_policy,
        "settings": {"image": m.image, **parts},
        "status": m.status,
        "type": "docker",
        "version": m.version,
    }
    if m.env:
        entry["env"] = {k: {"value": str(v)} for k, v in sorted(m.env.items())}
    if m.image_pull_policy is not None:
        entry["imagePullPolicy"] = m.image_pull_policy
    if m.startup_order is not None:
        if schema_version == "1.0":
            raise ManifestError(f"module {m.name}: startupOrder needs schemaVersion 1.1")
        entry["startupOrder"] = m.startup_order
    return dict(sorted(entry.items()))


def _sorted(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _sorted(value[k]) for k in sorted(value)}
    if isinstance(value, list | tuple):
        return [_sorted(v) for v in value]
    return value


def manifest(
    runtime: Runtime, modules: Iterable[Module], routes: Iterable[RouteSpec]
) -> dict[str, Any]:
    """The deployment manifest of one device: ``$edgeAgent`` (runtime,
    edgeAgent and edgeHub, every module), ``$edgeHub`` (the routes, store and
    forward) and a twin for each module with desired properties. Module and
    route order do not matter. Raises :class:`ManifestError` (one line) on
    two modules or routes of one name, a route that does not parse, a value
    outside the documented ones, or a value not yet known."""
    mods = sorted(modules, key=lambda m: m.name)
    specs = sorted(routes, key=lambda r: r.name)
    if not is_known([asdict(runtime), *map(asdict, mods), *map(asdict, specs)]):
        raise ManifestError("a value of the manifest is not known yet (known after apply)")
    if runtime.schema_version not in SCHEMA_VERSIONS:
        raise ManifestError(f"schemaVersion {runtime.schema_version!r} is not one of 1.0, 1.1")
    for what, names in (("module", [m.name for m in mods]), ("route", [r.name for r in specs])):
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ManifestError(f"two {what}s named {dup[0]}")
    for spec in specs:
        try:
            parse_route(spec.route)
        except RouteError as e:
            raise RouteError(f"route {spec.name}: {e}") from None
        if runtime.schema_version == "1.0" and not isinstance(spec.value(), str):
            raise ManifestError(f"route {spec.name}: priority and timeToLiveSecs need 1.1")
    settings: dict[str, Any] = {"minDockerVersion": runtime.min_docker_version}
    if runtime.registry_credentials:
        settings["registryCredentials"] = {
            c.name: {
                "address": c.address,
                "password": _ref(c.password_env),
                "username": _ref(c.username_env),
            }
            for c in sorted(runtime.registry_credentials, key=lambda c: c.name)
        }
    edge_hub: dict[str, Any] = {
        "restartPolicy": "always",
        "settings": {"image": runtime.edge_hub, **split_create_options(EDGE_HUB_CREATE_OPTIONS)},
        "status": "running",
        "type": "docker",
    }
    if runtime.schema_version != "1.0":
        edge_hub["startupOrder"] = 0  # the hub first: modules connect to it
    agent = {
        "modules": {m.name: _module_entry(m, runtime.schema_version) for m in mods},
        "runtime": {"settings": settings, "type": "docker"},
        "schemaVersion": runtime.schema_version,
        "systemModules": {
            "edgeAgent": {
                "settings": {"image": runtime.edge_agent, **split_create_options({})},
                "type": "docker",
            },
            "edgeHub": dict(sorted(edge_hub.items())),
        },
    }
    hub = {
        "routes": {r.name: r.value() for r in specs},
        "schemaVersion": runtime.schema_version,
        "storeAndForwardConfiguration": {"timeToLiveSecs": runtime.time_to_live_secs},
    }
    content: dict[str, Any] = {
        "$edgeAgent": {"properties.desired": agent},
        "$edgeHub": {"properties.desired": hub},
    }
    for m in mods:
        if m.desired_properties is not None:
            content[m.name] = {"properties.desired": copy.deepcopy(dict(m.desired_properties))}
    out: dict[str, Any] = _sorted({"modulesContent": content})
    return out


def with_credentials(manifest_: Mapping[str, Any], environ: Mapping[str, str]) -> dict[str, Any]:
    """A copy of the manifest with each registry credential's ``${NAME}``
    replaced by that environment variable's value, for sending to a hub.
    Raises :class:`ManifestError` naming a variable that is not set (never
    a value). Never store or print what this returns."""
    out = copy.deepcopy(dict(manifest_))
    creds = _agent(out)["runtime"].get("settings", {}).get("registryCredentials", {})
    for name, cred in creds.items():
        for key in ("username", "password"):
            ref = _REF.match(str(cred.get(key, "")))
            if ref is None:
                continue
            if ref[1] not in environ:
                raise ManifestError(
                    f"registry credentials {name}: environment variable {ref[1]} is not set"
                )
            cred[key] = environ[ref[1]]
    return out


# -- canonical form -------------------------------------------------------------------
def canonical_json(manifest_: Mapping[str, Any]) -> str:
    """The manifest as canonical JSON: keys sorted, no whitespace, UTF-8."""
    return json.dumps(
        manifest_, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def manifest_text(manifest_: Mapping[str, Any]) -> str:
    """The manifest as a file (``deployment.json``): sorted keys, indented,
    a final newline; byte for byte the same for the same manifest."""
    return json.dumps(manifest_, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def manifest_digest(manifest_: Mapping[str, Any]) -> str:
    """``sha256:<hex>`` of the canonical JSON: what the plan compares."""
    return "sha256:" + hashlib.sha256(canonical_json(manifest_).encode("utf-8")).hexdigest()


# -- twin limits ------------------------------------------------------------------------
#: IoT Hub's limit on a twin's desired properties, and on their depth.
TWIN_DESIRED_MAX_BYTES = 32 * 1024
TWIN_MAX_DEPTH = 10
_BAD_TWIN_KEY = re.compile(r"[.$ \x00-\x1f\x7f-\x9f]")


def twin_size(value: Any) -> int:
    """A twin document's size as IoT Hub counts it: each key's UTF-8 length
    plus its value's (a string's UTF-8 length without control characters,
    8 for a number, 4 for a boolean, a nested object's own total)."""
    if isinstance(value, Mapping):
        return sum(len(str(k).encode()) + twin_size(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return sum(twin_size(v) for v in value)
    if isinstance(value, bool):
        return 4
    if isinstance(value, int | float):
        return 8
    if value is None:
        return 0
    return len(re.sub(r"[\x00-\x1f\x7f-\x9f]", "", str(value)).encode())


def twin_depth(value: Any) -> int:
    """How deep objects nest in a twin document (``{}`` is 1)."""
    if isinstance(value, Mapping):
        return 1 + max((twin_depth(v) for v in value.values()), default=0)
    if isinstance(value, list | tuple):
        return max((twin_depth(v) for v in value), default=0)
    return 0


def twin_problems(desired: Mapping[str, Any]) -> list[str]:
    """What IoT Hub would refuse in a twin's desired properties: a key with
    '.', '$', a space or a control character, nesting past 10, more than
    32 KB. Each a phrase such as ``key "a.b" has a '.'``."""
    out: list[str] = []

    def keys(value: Any, path: str) -> None:
        if isinstance(value, Mapping):
            for k, v in value.items():
                bad = _BAD_TWIN_KEY.search(str(k))
                if bad:
                    what = (
                        "a space"
                        if bad[0] == " "
                        else f"{bad[0]!r}"
                        if bad[0].isprintable()
                        else "a control character"
                    )
                    out.append(f"key {path + str(k)!r} has {what}")
                keys(v, f"{path}{k}.")
        elif isinstance(value, list | tuple):
            for v in value:
                keys(v, path)

    keys(desired, "")
    depth = twin_depth(desired)
    if depth > TWIN_MAX_DEPTH:
        out.append(f"objects nest {depth} deep, past IoT Hub's {TWIN_MAX_DEPTH}")
    size = twin_size(desired)
    if size > TWIN_DESIRED_MAX_BYTES:
        out.append(f"{size} bytes as IoT Hub counts them, past its {TWIN_DESIRED_MAX_BYTES}")
    return out


# -- the schema -----------------------------------------------------------------------
@cache
def load_schema() -> dict[str, Any]:
    """The JSON Schema of a deployment manifest shipped with the package."""
    text = resources.files("modelform.providers").joinpath("schemas/deployment.schema.json")
    schema: dict[str, Any] = json.loads(text.read_text(encoding="utf-8"))
    return schema


def validate(manifest_: Mapping[str, Any]) -> list[str]:
    """What is wrong with a manifest by the schema, one ``path: message`` each
    (empty: valid). Past the schema: each module's createOptions parts must
    join into one JSON object, and each twin's desired properties keep to
    IoT Hub's size and depth (:func:`twin_problems`)."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(load_schema())
    out = []
    for e in sorted(validator.iter_errors(manifest_), key=lambda e: list(map(str, e.path))):
        out.append(f"{'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}")
    if not out:
        agent = _agent(manifest_)
        for where, entries in (
            ("systemModules", agent["systemModules"]),
            ("modules", agent["modules"]),
        ):
            for name, entry in entries.items():
                try:
                    join_create_options(entry["settings"])
                except ManifestError as e:
                    out.append(f"{where}/{name}/settings: {e}")
        for name, twin in manifest_["modulesContent"].items():
            out += [
                f"{name}/properties.desired: {p}" for p in twin_problems(twin["properties.desired"])
            ]
    return out


# -- reading a manifest back ----------------------------------------------------------------
def _agent(manifest_: Mapping[str, Any]) -> Any:
    try:
        return manifest_["modulesContent"]["$edgeAgent"]["properties.desired"]
    except (KeyError, TypeError):
        raise ManifestError(
            "not a deployment manifest (no $edgeAgent desired properties)"
        ) from None


def _hub(manifest_: Mapping[str, Any]) -> Any:
    try:
        return manifest_["modulesContent"]["$edgeHub"]["properties.desired"]
    except (KeyError, TypeError):
        raise ManifestError("not a deployment manifest (no $edgeHub desired properties)") from None


def runtime_of(manifest_: Mapping[str, Any]) -> Runtime:
    """The runtime a manifest describes (credentials by their ``${NAME}``;
    a literal value reads back as an empty name)."""
    agent, hub = _agent(manifest_), _hub(manifest_)
    settings = agent["runtime"].get("settings", {})
    creds = []
    for name, c in sorted(settings.get("registryCredentials", {}).items()):
        user, password = _REF.match(str(c.get("username"))), _REF.match(str(c.get("password")))
        creds.append(
            RegistryCredential(
                name,
                str(c.get("address", "")),
                user[1] if user else "",
                password[1] if password else "",
            )
        )
    return Runtime(
        edge_agent=agent["systemModules"]["edgeAgent"]["settings"]["image"],
        edge_hub=agent["systemModules"]["edgeHub"]["settings"]["image"],
        schema_version=str(agent.get("schemaVersion")),
        min_docker_version=str(settings.get("minDockerVersion", "")),
        time_to_live_secs=int(hub.get("storeAndForwardConfiguration", {}).get("timeToLiveSecs", 0)),
        registry_credentials=tuple(creds),
    )


def modules_of(manifest_: Mapping[str, Any]) -> dict[str, Module]:
    """The modules a manifest deploys, by name, createOptions joined and
    twins' desired properties attached."""
    content = manifest_["modulesContent"]
    out = {}
    for name, e in sorted(_agent(manifest_).get("modules", {}).items()):
        twin = content.get(name, {}).get("properties.desired")
        out[name] = Module(
            name=name,
            image=e["settings"]["image"],
            version=str(e.get("version", "")),
            status=e.get("status", "running"),
            restart_policy=e.get("restartPolicy", "always"),
            create_options=join_create_options(e["settings"]),
            env={k: str(v.get("value")) for k, v in e.get("env", {}).items()},
            desired_properties=twin,
            startup_order=e.get("startupOrder"),
            image_pull_policy=e.get("imagePullPolicy"),
        )
    return out


def routes_of(manifest_: Mapping[str, Any]) -> dict[str, RouteSpec]:
    """The routes a manifest declares, by name (not parsed: see :func:`parse_route`)."""
    out = {}
    for name, value in sorted(_hub(manifest_).get("routes", {}).items()):
        if isinstance(value, str):
            out[name] = RouteSpec(name, value)
        else:
            out[name] = RouteSpec(
                name, value["route"], value.get("priority"), value.get("timeToLiveSecs")
            )
    return out


# -- differences --------------------------------------------------------------------------
@dataclass(frozen=True)
class Change:
    """One difference between two manifests. ``scope`` is ``runtime``,
    ``module`` or ``route``; ``field`` what changed (``added``, ``removed``,
    ``image``, ``env``, ``desired properties`` …); ``before``/``after`` the
    values shown, or for env, createOptions and desired properties the
    names of the keys that changed (values there may be large or private)."""

    scope: str
    name: str
    field: str
    before: Any = None
    after: Any = None

    def __str__(self) -> str:
        head = self.name if self.scope == "runtime" else f"{self.scope} {self.name}"
        if self.field in ("added", "removed"):
            return f"{head}: {self.field}"
        if self.field in ("env", "createOptions", "desired properties"):
            return f"{head}: {self.field} changed ({', '.join(self.after)})"
        what = f"{self.field} " if self.field else ""
        return f"{head}: {what}{_show(self.before)} → {_show(self.after)}"


def _show(value: Any) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, RouteSpec):
        text = value.route
        extra = [f"priority {value.priority}"] * (value.priority is not None) + [
            f"ttl {value.time_to_live_secs}s"
        ] * (value.time_to_live_secs is not None)
        return repr(text) + (f" ({', '.join(extra)})" if extra else "")
    return str(value)


def _paths(a: Any, b: Any, prefix: str = "") -> list[str]:
    """Dotted key paths whose values differ between two JSON values."""
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        out: list[str] = []
        for k in sorted(set(a) | set(b)):
            out += _paths(a.get(k), b.get(k), f"{prefix}.{k}" if prefix else str(k))
        return out
    return [] if a == b else [prefix or "(all)"]


def _module_changes(name: str, a: Module, b: Module) -> list[Change]:
    out = [
        Change("module", name, label, getattr(a, attr), getattr(b, attr))
        for attr, label in (
            ("image", "image"),
            ("version", "version"),
            ("status", "status"),
            ("restart_policy", "restart policy"),
            ("startup_order", "startup order"),
            ("image_pull_policy", "image pull policy"),
        )
        if getattr(a, attr) != getattr(b, attr)
    ]
    env = _paths(dict(a.env), dict(b.env))
    if env:
        out.append(Change("module", name, "env", None, env))
    options = _paths(dict(a.create_options), dict(b.create_options))
    if options:
        out.append(Change("module", name, "createOptions", None, options))
    if a.desired_properties != b.desired_properties:
        paths = _paths(a.desired_properties or {}, b.desired_properties or {})
        out.append(Change("module", name, "desired properties", None, paths or ["(all)"]))
    return out


def changes(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> list[Change]:
    """What differs from ``old`` to ``new``: the runtime first, then each
    module and each route by name. Empty when they are the same; ``old``
    None: every module and route added."""
    out: list[Change] = []
    if old is not None:
        ra, rb = runtime_of(old), runtime_of(new)
        for attr, label in (
            ("edge_agent", "edgeAgent image"),
            ("edge_hub", "edgeHub image"),
            ("schema_version", "schemaVersion"),
            ("min_docker_version", "minDockerVersion"),
            ("time_to_live_secs", "store and forward timeToLiveSecs"),
        ):
            if getattr(ra, attr) != getattr(rb, attr):
                out.append(Change("runtime", label, "", getattr(ra, attr), getattr(rb, attr)))
        ca = {c.name: c for c in ra.registry_credentials}
        cb = {c.name: c for c in rb.registry_credentials}
        for n in sorted(set(ca) | set(cb)):
            if ca.get(n) != cb.get(n):
                what = "added" if n not in ca else "removed" if n not in cb else ""
                before = ca[n].address if n in ca else None
                after = cb[n].address if n in cb else None
                out.append(Change("registry credentials", n, what or "address", before, after))
    ma = modules_of(old) if old is not None else {}
    mb = modules_of(new)
    for n in sorted(set(ma) | set(mb)):
        if n not in ma:
            out.append(Change("module", n, "added"))
        elif n not in mb:
            out.append(Change("module", n, "removed"))
        else:
            out += _module_changes(n, ma[n], mb[n])
    ra_, rb_ = (routes_of(old) if old is not None else {}), routes_of(new)
    for n in sorted(set(ra_) | set(rb_)):
        if n not in ra_:
            out.append(Change("route", n, "added"))
        elif n not in rb_:
            out.append(Change("route", n, "removed"))
        elif ra_[n] != rb_[n]:
            out.append(Change("route", n, "", ra_[n], rb_[n]))
    return out


def diff(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> list[str]:
    """:func:`changes` as plan lines: ``module diabetes: image diabetes:2 →
    diabetes:3``, ``route r: added``, ``edgeHub image a → b``."""
    return [str(c) for c in changes(old, new)]
