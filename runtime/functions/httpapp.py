"""The host's HTTP side: ``/<routePrefix>/<route>`` per HTTP function, health and status.

=========================  ====================================================
``/api/<route>``           the function whose route template matches (ASP.NET
                           style, case-insensitive: ``{id}``, ``{id?}``,
                           ``{id:int}``, ``{*rest}``); its ``methods`` only
                           (none listed: any). ``authLevel`` function/admin
                           needs the key in ``x-functions-key`` or ``?code=``
                           (``MODELFORM_FUNCTION_KEY``), else 401.
``GET /``                  health: 200 once the app is loaded and every
                           trigger's listener runs (its last poll worked),
                           else 503 naming what is wrong.
``GET /admin/host/status`` JSON: ``state``, ``app_digest``, ``functions``,
                           ``counts`` per function, ``triggers``.
=========================  ====================================================

A function that raises is answered 500 with an empty body, as the real
host does; an HTTP function may return ``func.HttpResponse``, ``str``,
``None`` (204) or, beyond the real worker, a dict/list (JSON).
"""

from __future__ import annotations

import asyncio
import hmac
import re
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import parse_qsl

import orjson

from modelform.runtime.functions.bindings import http_answer, http_value
from modelform.runtime.functions.invoke import Invoker, Outcome
from modelform.runtime.functions.loader import AppLoadError, FunctionSpec, Param
from modelform.runtime.functions.outputs import OutputWriter, read_blob_inputs, trigger_param

MAX_BODY_BYTES = 100 * 1024 * 1024  # the real host's request size limit
_CONSTRAINTS = {
    "int": r"-?\d+",
    "long": r"-?\d+",
    "alpha": r"[A-Za-z]+",
    "bool": r"(?i:true|false)",
    "guid": r"[0-9A-Fa-f]{8}-?(?:[0-9A-Fa-f]{4}-?){3}[0-9A-Fa-f]{12}",
}
_TEXT = b"text/plain; charset=utf-8"


@dataclass(frozen=True)
class Route:
    spec: FunctionSpec
    template: str
    regex: re.Pattern[str]
    names: tuple[str, ...]
    methods: frozenset[str] | None
    needs_key: bool
    param: Param

    def match(self, path: str) -> dict[str, str] | None:
        found = self.regex.fullmatch(path)
        if found is None:
            return None
        return {
            name: value
            for name, value in zip(self.names, found.groups(), strict=True)
            if value is not None
        }


def route_order(route: Route) -> tuple[int, int, int]:
    """Literal segments before parameters, catch-alls last (as ASP.NET ranks templates)."""
    segments = route.template.split("/")
    literals = sum(1 for segment in segments if "{" not in segment)
    return (int("{*" in route.template), -literals, -len(segments))


def compile_route(spec: FunctionSpec, prefix: str) -> Route:
    template = str(spec.trigger.get("route") or spec.name).strip("/")
    parts: list[str] = []
    names: list[str] = []
    for segment in template.split("/"):
        whole = re.fullmatch(
            r"\{(\*?)([A-Za-z_][A-Za-z0-9_]*)(?::([A-Za-z]+)[^}]*)?(\?)?\}", segment
        )
        if whole is not None:
            catch_all, name, constraint, optional = whole.groups()
            names.append(name)
            if catch_all:
                parts.append("(?:/(.*))?" if parts else "(.*)")
                continue
            body = _CONSTRAINTS.get((constraint or "").lower(), r"[^/]+")
            if optional:
                parts.append(f"(?:/({body}))?" if parts else f"({body})?")
            else:
                parts.append(f"/({body})" if parts else f"({body})")
            continue
        if "{" in segment:
            raise AppLoadError(
                f"function {spec.name}: route {template!r}: a parameter must be a whole segment"
            )
        parts.append(("/" if parts else "") + re.escape(segment))
    lead = f"/{prefix}/" if prefix else "/"
    regex = re.compile(re.escape(lead) + "".join(parts) + "/?", re.IGNORECASE | re.DOTALL)
    methods = spec.trigger.get("methods")
    level = str(spec.trigger.get("authLevel") or "FUNCTION").upper()
    return Route(
        spec=spec,
        template=template,
        regex=regex,
        names=tuple(names),
        methods=frozenset(str(m).upper() for m in methods) if methods else None,
        needs_key=level in ("FUNCTION", "ADMIN", "SYSTEM"),
        param=trigger_param(spec),
    )


class HostView(Protocol):
    """What the HTTP side asks the host: health and the status document."""

    def health(self) -> tuple[bool, str]: ...

    def status(self) -> dict[str, Any]: ...


class FunctionsHttpApp:
    """The ASGI application (uvicorn with httptools serves it)."""

    def __init__(
        self,
        routes: list[Route],
        invoker: Invoker,
        writer: OutputWriter,
        key: str,
        view: HostView,
    ) -> None:
        self.routes = routes
        self.invoker = invoker
        self.writer = writer
        self._key = key.encode("utf-8")
        self.view = view

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        method: str = scope["method"]
        if path == "/":
            healthy, reason = self.view.health()
            if method not in ("GET", "HEAD"):
                await _send(send, 405, b"method not allowed")
            elif healthy:
                await _send(send, 200, b"Healthy")
            else:
                await _send(send, 503, f"Unhealthy: {reason}".encode())
            return
        if path.rstrip("/") == "/admin/host/status":
            body = orjson.dumps(self.view.status(), option=orjson.OPT_INDENT_2)
            await _send(send, 200, body, b"application/json")
            return
        for route in self.routes:
            params = route.match(path)
            if params is None:
                continue
            if route.methods is not None and method not in route.methods:
                continue
            await self._call(route, params, scope, receive, send)
            return
        await _send(send, 404, f"no function at {method} {path}".encode())

    def _authorised(self, headers: dict[str, str], query: dict[str, str]) -> bool:
        offered = headers.get("x-functions-key") or query.get("code") or ""
        if not self._key or not offered:
            return False
        return hmac.compare_digest(offered.encode("utf-8"), self._key)

    async def _call(
        self, route: Route, params: dict[str, str], scope: dict[str, Any], receive: Any, send: Any
    ) -> None:
        headers: dict[str, str] = {}
        for name, value in scope["headers"]:
            key = name.decode("latin-1").lower()
            text = value.decode("latin-1")
            headers[key] = f"{headers[key]}, {text}" if key in headers else text
        query: dict[str, str] = {}
        for name, value in parse_qsl(scope["query_string"].decode("latin-1"), True):
            query.setdefault(name, value)
        if route.needs_key and not self._authorised(headers, query):
            await _send(send, 401, b"")
            return
        body = await _read_body(receive, headers)
        if body is None:
            await _send(send, 413, b"request body too large")
            return
        request = http_value(scope["method"], _url(scope, headers), headers, query, params, body)
        spec = route.spec
        data = {**query, **params}
        inputs: dict[str, Any] = {route.param.name: request}
        outcome: Outcome
        if any(not p.is_out and p.binding["type"] == "blob" for p in spec.params):
            loop = asyncio.get_running_loop()
            connections = self.writer.connections
            inputs.update(
                await loop.run_in_executor(None, read_blob_inputs, spec, connections, data)
            )
        outcome = await self.invoker.call_async(spec, inputs)
        status, answer_headers, answer_body = 500, [], b""
        if outcome.ok:
            try:
                if _has_other_outputs(spec):
                    loop = asyncio.get_running_loop()
                    await loop.run_in_executor(None, self.writer.write, spec, outcome, data)
                answer = http_answer(_http_result(spec, outcome), None, f"function {spec.name}")
                status, answer_headers, answer_body = answer.status, answer.headers, answer.body
            except Exception as error:  # noqa: BLE001 - the function's fault (or its output's): 500
                outcome.ok = False
                outcome.error = f"{type(error).__name__}: {error}"
        self.invoker.record(
            spec, outcome, method=scope["method"], path=scope["path"], http_status=status
        )
        await _send_full(send, status, answer_headers, answer_body)


def _http_result(spec: FunctionSpec, outcome: Outcome) -> Any:
    for param in spec.outputs():
        if param.binding["type"] == "http":
            return outcome.outputs[param.name].get()
    return outcome.returned


def _has_other_outputs(spec: FunctionSpec) -> bool:
    outputs = [p.binding for p in spec.outputs()]
    if spec.return_binding is not None:
        outputs.append(spec.return_binding)
    return any(binding["type"] != "http" for binding in outputs)


def _url(scope: dict[str, Any], headers: dict[str, str]) -> str:
    host = headers.get("host") or "{}:{}".format(*(scope.get("server") or ("localhost", 80)))
    query = scope["query_string"].decode("latin-1")
    return f"{scope.get('scheme', 'http')}://{host}{scope['path']}" + (f"?{query}" if query else "")


async def _read_body(receive: Any, headers: dict[str, str]) -> bytes | None:
    declared = headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        return None
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return None
        chunks.append(chunk)
        if not message.get("more_body"):
            break
    return b"".join(chunks)


async def _send(send: Any, status: int, body: bytes, content_type: bytes = _TEXT) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _send_full(send: Any, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
    raw = [
        (name.lower().encode("latin-1"), value.encode("latin-1"))
        for name, value in headers
        if name.lower() != "content-length"
    ]
    raw.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})
