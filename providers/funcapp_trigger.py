"""A function-app service's ``trigger:``: its schema, its defaults and the
checks that need more than a schema (``check_trigger``).

One trigger per service, of one kind:

* ``{kind: http, route: score, auth_level: function|anonymous}``
* ``{kind: blob, container: requests, input: "input/{blobname}.json",
  output: "output/{blobname}_out.json", connection: AzureWebJobsStorage}``
  (``bucket`` is a synonym of ``container``; ``output`` optional)
* ``{kind: queue, queue: requests, output_queue: responses, connection: ...}``
* ``{kind: servicebus, queue: q}`` or ``{kind: servicebus, topic: t,
  subscription: s}``, ``connection`` required, ``output_queue`` optional

The schema checks types and names only: rules that tie keys together (which
keys a kind takes, queue or topic, captures of the output pattern) are
:func:`check_trigger`'s, so each is one file:line diagnostic worded for
the trigger rather than a generic schema message. This module reads data
only; it never touches storage.
"""

from __future__ import annotations

import re
from typing import Any

from modelform.plugin import Diagnostic, Pos, Resource, is_known

KINDS = ("http", "blob", "queue", "servicebus")
#: The app setting that names the storage account, as the Functions host calls it.
STORAGE_SETTING = "AzureWebJobsStorage"
DEFAULT_ROUTE = "score"
#: Keys each kind takes besides ``kind``.
KEYS = {
    "http": ("route", "auth_level"),
    "blob": ("container", "bucket", "input", "output", "connection"),
    "queue": ("queue", "output_queue", "connection"),
    "servicebus": ("queue", "topic", "subscription", "output_queue", "connection"),
}
_SETTING = r"^[A-Za-z_][A-Za-z0-9_:.-]*$"
_CAPTURE = re.compile(r"\{([^{}]*)\}")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
#: Names an output pattern may use beside the input's captures (the host's built-ins).
BUILTINS = ("rand-guid", "DateTime")
#: Azure Storage containers and queues: 3-63 lowercase letters, digits and
#: single hyphens, starting and ending with a letter or digit.
_STORAGE_NAME = re.compile(r"^(?!.*--)[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")
#: S3 buckets also take dots.
_BUCKET_NAME = re.compile(r"^(?!.*\.\.)[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_SB_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,259}$")
_ROUTE = re.compile(r"^[A-Za-z0-9_.~{}-]+(/[A-Za-z0-9_.~{}-]+)*$")

TRIGGER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "default": {"kind": "http"},
    "description": "What makes the function app score: kind http (route, auth_level), blob "
    "(container, input and output path patterns with {name} captures, connection), queue "
    "(queue, output_queue, connection) or servicebus (queue, or topic and subscription; "
    "connection; output_queue). The app also answers over HTTP at route score. "
    "See docs/providers/functionapp.md.",
    "properties": {
        "kind": {
            "enum": list(KINDS),
            "description": "http, blob, queue or servicebus.",
        },
        "route": {
            "type": "string",
            "minLength": 1,
            "description": "http: the route under /api/ (default score).",
        },
        "auth_level": {
            "enum": ["function", "anonymous"],
            "description": "http: function = callers send the function key (x-functions-key "
            "header or ?code=); default function with auth: key, else anonymous.",
        },
        "container": {
            "type": "string",
            "minLength": 1,
            "description": "blob: the container (an S3 bucket on S3 storage) watched for input.",
        },
        "bucket": {
            "type": "string",
            "minLength": 1,
            "description": "blob: synonym of container.",
        },
        "input": {
            "type": "string",
            "minLength": 1,
            "description": "blob: path pattern of input blobs in the container, with {name} "
            'captures, e.g. "input/{blobname}.json".',
        },
        "output": {
            "type": "string",
            "minLength": 1,
            "description": "blob: path pattern the result is written to in the same container, "
            'using the input\'s captures, e.g. "output/{blobname}_out.json" (default: none).',
        },
        "queue": {
            "type": "string",
            "minLength": 1,
            "description": "queue: the storage queue read; servicebus: the Service Bus queue read.",
        },
        "output_queue": {
            "type": "string",
            "minLength": 1,
            "description": "queue, servicebus: queue the result is sent to (default: none).",
        },
        "topic": {
            "type": "string",
            "minLength": 1,
            "description": "servicebus: the topic read (with subscription; instead of queue).",
        },
        "subscription": {
            "type": "string",
            "minLength": 1,
            "description": "servicebus: the topic's subscription.",
        },
        "connection": {
            "type": "string",
            "pattern": _SETTING,
            "description": "Name of the app setting holding the connection (blob and queue: "
            f"default {STORAGE_SETTING}, the target's storage; servicebus: required, e.g. "
            "ServiceBusConnection, set in the service's env or the host's environment).",
        },
    },
    "additionalProperties": False,
}


def captures(pattern: str) -> list[str]:
    """The ``{name}`` captures of a path pattern, in order (``{{``/``}}`` are
    literal braces, as in the Functions host)."""
    return _CAPTURE.findall(pattern.replace("{{", "").replace("}}", ""))


def pattern_regex(pattern: str) -> re.Pattern[str]:
    """A regex matching the blob names ``pattern`` describes, one group per
    capture; a pattern without captures is a prefix (every blob under it)."""
    if not captures(pattern):
        literal = pattern.replace("{{", "{").replace("}}", "}")
        return re.compile("^" + re.escape(literal) + ".+$", re.DOTALL)
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith(("{{", "}}"), i):
            out.append(re.escape(pattern[i]))
            i += 2
        elif pattern[i] == "{":
            end = pattern.index("}", i)
            out.append("(.+?)")
            i = end + 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("^" + "".join(out) + "$", re.DOTALL)


def function_name(service: str) -> str:
    """The name of the function the service's trigger runs: the service name
    with ``-`` made ``_`` (``fn_`` first when it starts with a digit: Azure
    function names start with a letter)."""
    name = service.replace("-", "_")
    return f"fn_{name}" if not name[:1].isalpha() else name


def http_function_name(service: str) -> str:
    """The extra HTTP function every non-HTTP app has (route ``score``)."""
    return f"{function_name(service)}_http"


def normalize(trigger: dict[str, Any] | None, auth: str | None = "none") -> dict[str, Any]:
    """The trigger with its defaults filled in: ``bucket`` becomes
    ``container``; http gets its route and auth level (``function`` with
    ``auth: key``, else ``anonymous``); blob and queue their connection.
    Assumes :func:`check_trigger` found nothing."""
    t = dict(trigger or {"kind": "http"})
    kind = t.get("kind", "http")
    t["kind"] = kind
    if kind == "http":
        t.setdefault("route", DEFAULT_ROUTE)
        t.setdefault("auth_level", "function" if auth == "key" else "anonymous")
    elif kind == "blob":
        if "bucket" in t:
            t.setdefault("container", t.pop("bucket"))
        t.setdefault("connection", STORAGE_SETTING)
    elif kind == "queue":
        t.setdefault("connection", STORAGE_SETTING)
    return t


def http_auth_level(trigger: dict[str, Any], auth: str | None) -> str:
    """The auth level of the app's HTTP function (the trigger's, or the extra one's)."""
    if trigger.get("kind") == "http" and trigger.get("auth_level"):
        return str(trigger["auth_level"])
    return "function" if auth == "key" else "anonymous"


class _Check:
    def __init__(self, r: Resource, storage_kind: str | None) -> None:
        self.r, self.storage_kind = r, storage_kind
        self.out: list[Diagnostic] = []

    def pos(self, *key: str) -> Pos | None:
        return self.r.option_pos("trigger", *key)

    def error(self, message: str, key: str | None = None, hint: str | None = None) -> None:
        where = ("trigger", key) if key else ("trigger",)
        self.out.append(
            Diagnostic(
                f"{self.r.address}: {'.'.join(where)}: {message}", self.pos(*where[1:]), hint
            )
        )

    def known(self, t: dict[str, Any], key: str) -> bool:
        return key in t and is_known(t[key])

    def run(self, t: dict[str, Any], auth: Any) -> None:
        kind = t.get("kind")
        if not is_known(kind):
            return
        if kind not in KINDS:
            self.error(f"unknown kind {kind!r}", "kind", f"kinds: {', '.join(KINDS)}")
            return
        for key in t:
            if key != "kind" and key not in KEYS[kind]:
                self.error(
                    f"a {kind} trigger takes no {key}", key, f"its keys: {', '.join(KEYS[kind])}"
                )
        getattr(self, f"check_{kind}")(t, auth)

    def check_http(self, t: dict[str, Any], auth: Any) -> None:
        route = t.get("route")
        if isinstance(route, str) and is_known(route):
            if not _ROUTE.match(route):
                self.error(
                    f"route {route!r} is not a route template",
                    "route",
                    "letters, digits, -, _, ., ~ and {param}, parts joined by /, no leading /",
                )
            elif route.split("/", 1)[0].lower() in ("admin", "runtime"):
                self.error(f"route {route!r} is reserved by the Functions host", "route")
        level = t.get("auth_level")
        if not (is_known(level) and is_known(auth)):
            return
        if level == "function" and auth != "key":
            self.error(
                "auth_level function needs auth: key on the service (the key callers send)",
                "auth_level",
            )
        if level == "anonymous" and auth == "key":
            self.error(
                "auth_level anonymous with auth: key would answer without the key", "auth_level"
            )

    def check_blob(self, t: dict[str, Any], auth: Any) -> None:
        if "container" in t and "bucket" in t:
            self.error('set either "container" or "bucket", not both', "bucket")
        key = "bucket" if "bucket" in t else "container"
        name = t.get(key)
        if name is None:
            self.error("a blob trigger needs a container (or bucket)")
        elif isinstance(name, str) and is_known(name):
            rule = _BUCKET_NAME if self.storage_kind == "s3" else _STORAGE_NAME
            if not rule.match(name):
                what = "an S3 bucket" if self.storage_kind == "s3" else "a container"
                self.error(
                    f"{name!r} is not {what} name",
                    key,
                    "3-63 lowercase letters, digits and single hyphens"
                    + (" or dots" if self.storage_kind == "s3" else "")
                    + ", starting and ending with a letter or digit",
                )
        if "input" not in t:
            self.error('a blob trigger needs an input pattern, e.g. "input/{blobname}.json"')
            return
        if self.known(t, "input"):
            self.patterns(str(t["input"]), t.get("output"))
        self.connection(t, storage=True)

    def patterns(self, pattern: str, output: Any) -> None:
        names = self.pattern("input", pattern)
        if names is None or not isinstance(output, str) or not is_known(output):
            return
        out_names = self.pattern("output", output, inputs=names)
        if out_names is None:
            return
        sample = output
        for n in set(out_names):
            sample = sample.replace("{" + n + "}", "x")  # a one-letter capture value
        if pattern_regex(pattern).match(sample.replace("{{", "{").replace("}}", "}")):
            self.error(
                f"output {output!r} matches the input pattern {pattern!r}: each result "
                "would trigger the function again",
                "output",
                'write results under another prefix, e.g. "output/"',
            )

    def pattern(self, key: str, pattern: str, inputs: list[str] | None = None) -> list[str] | None:
        if pattern.startswith("/"):
            self.error(f"{pattern!r}: a path in the container starts without /", key)
            return None
        names = captures(pattern)
        stripped = pattern.replace("{{", "").replace("}}", "")
        if stripped.count("{") != len(names) or stripped.count("}") != len(names):
            self.error(f"{pattern!r} has an unmatched brace", key, "a literal brace is {{ or }}")
            return None
        for n in names:
            if not _IDENT.match(n):
                self.error(f"capture {{{n}}} in {pattern!r} is not a name", key)
                return None
        if inputs is None:
            dup = sorted({n for n in names if names.count(n) > 1})
            if dup:
                self.error(f"capture {{{dup[0]}}} appears twice in {pattern!r}", key)
                return None
            if re.search(r"\}\{", stripped):
                self.error(
                    f"{pattern!r}: two captures side by side cannot be told apart",
                    key,
                    "put a literal between them",
                )
                return None
            return names
        known = {n.lower() for n in (*inputs, *BUILTINS)}
        missing = [n for n in names if n.lower() not in known]
        if missing:
            self.error(
                f"capture {{{missing[0]}}} of the output is not captured by the input",
                key,
                f"input captures: {', '.join('{' + n + '}' for n in inputs) or 'none'}; "
                "built-ins: {rand-guid}, {DateTime}",
            )
            return None
        return names

    def check_queue(self, t: dict[str, Any], auth: Any) -> None:
        if "queue" not in t:
            self.error("a queue trigger needs a queue")
        for key in ("queue", "output_queue"):
            name = t.get(key)
            if isinstance(name, str) and is_known(name) and not _STORAGE_NAME.match(name):
                self.error(
                    f"{name!r} is not a storage queue name",
                    key,
                    "3-63 lowercase letters, digits and single hyphens, "
                    "starting and ending with a letter or digit",
                )
        if t.get("output_queue") is not None and t.get("output_queue") == t.get("queue"):
            self.error(
                "output_queue is the queue read: each result would trigger it again", "output_queue"
            )
        self.connection(t, storage=True)

    def check_servicebus(self, t: dict[str, Any], auth: Any) -> None:
        has_queue, has_topic = "queue" in t, "topic" in t
        if has_queue and has_topic:
            self.error(
                'set either "queue" or "topic" (with "subscription"), not both',
                "topic",
            )
        elif not has_queue and not has_topic and "subscription" not in t:
            self.error('a servicebus trigger needs a "queue", or a "topic" and a "subscription"')
        if has_topic and "subscription" not in t:
            self.error(
                "a topic needs a subscription to read from", "topic", "add subscription: NAME"
            )
        if "subscription" in t and not has_topic:
            self.error("subscription reads a topic: set topic too (or remove it)", "subscription")
        for key in ("queue", "topic", "subscription", "output_queue"):
            name = t.get(key)
            if isinstance(name, str) and is_known(name) and not _SB_NAME.match(name):
                self.error(
                    f"{name!r} is not a Service Bus entity name",
                    key,
                    "letters, digits, '.', '-', '_' and '/'",
                )
        if has_queue and t.get("output_queue") == t.get("queue"):
            self.error(
                "output_queue is the queue read: each result would trigger it again", "output_queue"
            )
        if "connection" not in t:
            self.error(
                "a servicebus trigger needs connection: the app setting holding the "
                "Service Bus connection string",
                None,
                "add connection: ServiceBusConnection and set that variable in env",
            )
            return
        if t["connection"] == STORAGE_SETTING:
            self.error(
                f"connection {STORAGE_SETTING} is the storage account, not a Service Bus namespace",
                "connection",
            )

    def connection(self, t: dict[str, Any], storage: bool) -> None:
        conn = t.get("connection")
        if storage and is_known(conn) and conn not in (None, STORAGE_SETTING):
            return  # another setting: its value comes from env or the host's environment
        if storage and self.storage_kind is None:
            self.out.append(
                Diagnostic(
                    f"{self.r.address}: a {t['kind']} trigger reads the target's storage, and "
                    "the target sets none",
                    self.r.option_pos("target"),
                    "add storage: {endpoint: URL} (S3) or {connection_string: ...} to the target",
                )
            )


def check_trigger(resource: Resource, storage_kind: str | None = "any") -> list[Diagnostic]:
    """Diagnostics (file:line) for the service's ``trigger:`` beyond its
    schema: keys another kind takes, queue and topic both, a topic without
    subscription, servicebus without connection, output captures the input
    lacks, an output that would trigger again, auth level against ``auth``,
    container and queue names. ``storage_kind`` is the target's storage
    (``"s3"``, ``"azure"``, ``None`` when it sets none; ``"any"`` when not
    known: names are checked by Azure's rules, a missing storage is not
    reported). Values still unknown at plan time are skipped."""
    trigger = resource.config.get("trigger")
    if not is_known(trigger) or trigger is None:
        return []
    check = _Check(resource, storage_kind)
    if not isinstance(trigger, dict):
        check.error("expected a mapping such as {kind: http}")
        return check.out
    if "kind" not in trigger:
        check.error("missing kind", None, f"kinds: {', '.join(KINDS)}")
        return check.out
    check.run(trigger, resource.config.get("auth", "none"))
    return check.out
