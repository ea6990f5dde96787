"""The scoring server's ASGI application (one instance per worker process).

Routes:

=================  =========================================================
``POST /score``    ``run()`` (also ``GET`` with query parameters; ``OPTIONS``
                   answers 200; other methods 405). Needs the key when auth
                   is on; 503 until ``init()`` has succeeded in this worker.
``GET /``          liveness: ``Healthy``.
``GET /ready``     readiness: 200 once ``init()`` succeeded here, else 503.
``GET /swagger.json``  the API description (see ``swagger``).
``GET /metrics``   Prometheus text: counters and latency for all workers.
=================  =========================================================

Every answer carries ``x-request-id`` (the client's, or a new UUID-shaped id:
a random per-worker prefix and a counter, cheaper than ``uuid4()``) and
``x-ms-request-id`` / ``x-ms-client-request-id`` as the Azure ML server
sets them; ``/score`` answers add ``x-ms-run-function-failed`` and
``x-ms-run-fn-exec-ms``.

``run()`` is called synchronously on the event loop's thread, one call at
a time per worker, like Azure ML's synchronous workers: it keeps CPU-bound
models from being interleaved, and lets :class:`Deadline` enforce the
timeout with a timer signal instead of a thread hop.
"""

from __future__ import annotations

import asyncio
import hmac
import inspect
import itertools
import json
import traceback
import uuid
from time import perf_counter
from typing import Any

from modelform.runtime import inputs, logs, metrics, responses
from modelform.runtime.aml_request import ClientError
from modelform.runtime.deadline import Deadline, RunTimeout
from modelform.runtime.options import ServeOptions
from modelform.runtime.responses import JSON, TEXT, Reply
from modelform.runtime.script import EntryScript
from modelform.runtime.swagger import SwaggerDocs

SERVER_VERSION = b"modelform-runtime/0.1"
#: Another header for the key, for callers behind a proxy that consumes
#: ``Authorization`` (the Kubernetes API server's service proxy).
KEY_HEADER = b"x-modelform-key"
_ID_LIMIT = 100
_QUIET_ROUTES = {"/", "/ready", "/metrics"}  # successful probes are not logged

_HEALTHY = Reply(200, [(b"content-type", TEXT)], b"Healthy")
_READY = Reply(200, [(b"content-type", TEXT)], b"Ready")
_OPTIONS = Reply(200, [(b"content-type", TEXT)], b"")
_PROMETHEUS = b"text/plain; version=0.0.4; charset=utf-8"
_RUN_OK = (b"x-ms-run-function-failed", b"False")
#: Result types that are neither awaitables nor response objects (skips the checks).
_PLAIN = frozenset({list, dict, str, int, float, bool, tuple, type(None)})


class ScoringApp:
    def __init__(
        self,
        options: ServeOptions,
        log: logs.JsonLog,
        shared: metrics.SharedMetrics,
        worker: int,
    ) -> None:
        self.ready = False
        self._script: EntryScript | None = None
        self._call: Any = None
        self._swagger: SwaggerDocs | None = None
        self._keys = tuple(key.encode("utf-8") for key in options.auth_keys)
        self._limit = options.max_body_bytes
        self._timeout = options.timeout
        self._deadline = Deadline(options.timeout)
        self._log = log
        self._access_log = options.access_log
        self._shared = shared
        self._slot = shared.slot(worker)
        self._worker = worker
        self._id_prefix = str(uuid.uuid4())[:24]
        self._id_counter = itertools.count(1)

    def attach(self, script: EntryScript, swagger: SwaggerDocs) -> None:
        """Start answering ``/score`` (called once ``init()`` has succeeded)."""
        self._script = script
        self._call = script.make_call()
        self._swagger = swagger
        self._slot.set_ready()
        self.ready = True

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        start = perf_counter()
        path = scope["path"]
        method = scope["method"]
        request_id = legacy_id = client_id = ""
        authorization = content_type = b""
        content_length = -1
        for name, value in scope["headers"]:
            if name == b"content-length":
                content_length = int(value) if value.isdigit() else -1
            elif name == b"content-type":
                content_type = value
            elif name == b"authorization":
                authorization = value
            elif name == KEY_HEADER and not authorization:
                # The key where a proxy in between takes Authorization for itself
                # (the Kubernetes API server's service proxy does).
                authorization = b"Bearer " + value
            elif name == b"x-request-id":
                request_id = value.decode("latin-1")
            elif name == b"x-ms-request-id":
                legacy_id = value.decode("latin-1")
            elif name == b"x-ms-client-request-id":
                client_id = value.decode("latin-1")
        if not request_id:
            request_id = f"{self._id_prefix}{next(self._id_counter):012x}"
        if legacy_id:
            client_id = client_id or legacy_id
        else:
            legacy_id = client_id or request_id

        if max(len(request_id), len(legacy_id), len(client_id)) > _ID_LIMIT:
            route = metrics.ROUTE_INDEX.get(path, metrics.OTHER_ROUTE)
            reply = responses.error(
                431, f"request id headers must not exceed {_ID_LIMIT} characters"
            )
            request_id = legacy_id = client_id = ""
        elif path == "/score":
            route = 0
            reply = await self._score(
                scope, receive, method, request_id, authorization, content_type, content_length
            )
        elif path == "/":
            route = 1
            reply = _HEALTHY if method in ("GET", "HEAD") else _not_allowed()
        elif path == "/ready":
            route = 2
            if method not in ("GET", "HEAD"):
                reply = _not_allowed()
            elif self.ready:
                reply = _READY
            else:
                reply = _not_ready(request_id)
        elif path == "/swagger.json":
            route = 3
            reply = self._swagger_reply(scope, method, request_id)
        elif path == "/metrics":
            route = 4
            if method in ("GET", "HEAD"):
                reply = Reply(200, [(b"content-type", _PROMETHEUS)], self._shared.render())
            else:
                reply = _not_allowed()
        else:
            route = metrics.OTHER_ROUTE
            reply = responses.error(404, f"no route {path}", request_id)

        headers = [
            *reply.headers,
            (b"content-length", str(len(reply.body)).encode()),
            (b"x-ms-server-version", SERVER_VERSION),
        ]
        if request_id:
            headers.append((b"x-request-id", request_id.encode("latin-1")))
            headers.append((b"x-ms-request-id", legacy_id.encode("latin-1")))
            if client_id:
                headers.append((b"x-ms-client-request-id", client_id.encode("latin-1")))
        status = reply.status
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": reply.body})

        elapsed = perf_counter() - start
        self._slot.observe(route, status, elapsed)
        if self._access_log and (status != 200 or path not in _QUIET_ROUTES):
            self._log.request(method, path, status, elapsed, request_id)

    async def _score(
        self,
        scope: dict[str, Any],
        receive: Any,
        method: str,
        request_id: str,
        authorization: bytes,
        content_type: bytes,
        content_length: int,
    ) -> Reply:
        if self._keys and not self._authorised(authorization):
            reply = responses.error(
                401, "a valid key is required: Authorization: Bearer <key>", request_id
            )
            reply.headers.append((b"www-authenticate", b"Bearer"))
            return reply
        script = self._script
        if not self.ready or script is None:
            return _not_ready(request_id)
        body: bytes | None = None
        if method == "POST":
            if content_length > self._limit:
                return _too_large(self._limit, request_id)
            try:
                body = await self._read_body(receive)
            except _ClientGone:
                return responses.error(400, "the client left before sending the body", request_id)
            if body is None:
                return _too_large(self._limit, request_id)
        elif method == "OPTIONS":
            return _OPTIONS
        elif method != "GET":
            return _not_allowed()
        try:
            value = inputs.build_input(script, scope, body, content_type)
        except inputs.InputError as error:
            return responses.error(error.status, error.message, request_id)
        headers = inputs.headers_dict(scope) if script.wants_headers else None

        slot = self._slot
        slot.busy()
        started = perf_counter()
        try:
            output = self._deadline.call(self._call, value, headers)
            if type(output) not in _PLAIN and inspect.isawaitable(output):
                output = await asyncio.wait_for(output, self._timeout)
        except (TimeoutError, RunTimeout):
            self._log.error("run_timeout", request_id=request_id, timeout_s=self._timeout)
            return responses.error(
                504, f"Scoring timeout after {_ms(self._timeout)} ms", request_id, failed=True
            )
        except ClientError as error:
            return responses.error(error.code, error.description, request_id)
        except (Exception, SystemExit) as error:
            if (
                isinstance(error, json.JSONDecodeError)
                and body is not None
                and not inputs.is_json(body)
            ):
                return responses.error(400, f"request body is not valid JSON: {error}", request_id)
            return self._run_failed(error, request_id)
        finally:
            slot.idle()
        exec_ms = (perf_counter() - started) * 1000

        if type(output) not in _PLAIN and responses.is_response_object(output):
            reply = responses.from_response_object(output)
        else:
            try:
                reply = Reply(
                    200, [(b"content-type", JSON), _RUN_OK], responses.encode_output(output)
                )
            except responses.UnserialisableOutput as error:
                return self._run_failed(error, request_id)
        reply.headers.append((b"x-ms-run-fn-exec-ms", f"{exec_ms:.3f}".encode()))
        return reply

    def _run_failed(self, error: BaseException, request_id: str) -> Reply:
        detail = f"{type(error).__name__}: {error}"
        self._log.error(
            "run_failed",
            request_id=request_id,
            error=detail,
            traceback="".join(traceback.format_exception(error)),
        )
        message = f"An unexpected error occurred in scoring script: {detail}"
        return responses.error(500, message, request_id, failed=True)

    def _authorised(self, header: bytes) -> bool:
        scheme, _, token = header.partition(b" ")
        if scheme.lower() != b"bearer":
            token = b""
        token = token.strip()
        granted = False
        for key in self._keys:
            granted |= hmac.compare_digest(token, key)
        return granted

    async def _read_body(self, receive: Any) -> bytes | None:
        """The whole body, or None once it grows past the limit; _ClientGone on a disconnect."""
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _ClientGone()
        body = message.get("body", b"")
        if not message.get("more_body", False):
            return body if len(body) <= self._limit else None
        chunks = [body]
        size = len(body)
        while message.get("more_body", False):
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _ClientGone()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self._limit:
                return None
            chunks.append(chunk)
        return b"".join(chunks)

    def _swagger_reply(self, scope: dict[str, Any], method: str, request_id: str) -> Reply:
        if method not in ("GET", "HEAD"):
            return _not_allowed()
        if self._swagger is None:
            return _not_ready(request_id)
        version = None
        for key, value in inputs.parse_qsl_bytes(scope.get("query_string", b"")):
            if key == "version":
                version = value
        status, document = self._swagger.answer(version)
        return Reply(status, [(b"content-type", JSON)], document)


class _ClientGone(Exception):
    """The client disconnected before its body was complete (run() is not called)."""


def _not_allowed() -> Reply:
    return responses.error(405, "Method not allowed")


def _not_ready(request_id: str) -> Reply:
    reply = responses.error(503, "The service is not ready: init() has not finished", request_id)
    reply.headers.append((b"retry-after", b"1"))
    return reply


def _too_large(limit: int, request_id: str) -> Reply:
    return responses.error(413, f"request body exceeds the limit of {limit} bytes", request_id)


def _ms(seconds: float | None) -> str:
    return "none" if seconds is None else f"{seconds * 1000:g}"
