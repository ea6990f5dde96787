"""Talking to a deployed scoring runtime: its readiness, and a service's
``test:`` block, run against it right after apply.

``test: {request: <JSON>, expect_status: 200, expect: <JSON>}`` posts the
request to the service's ``/score`` route (with its key when ``auth: key``)
and fails the apply, showing the response, when the status or the output
differs from what is expected.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any

from modelform.engine.provider import Check, Context, ProviderError, Resource, ServiceStatus


def readiness(url: str, timeout: float = 2.0) -> str:
    """The service status its runtime's ``GET /ready`` tells: Healthy (200),
    Transitioning (503: init() still running) or Unhealthy (anything else,
    or no answer). Every target's refresh and apply use this one probe."""
    try:
        with urllib.request.urlopen(url + "/ready", timeout=timeout) as r:
            ok = r.status == 200
            return ServiceStatus.HEALTHY.value if ok else ServiceStatus.UNHEALTHY.value
    except urllib.error.HTTPError as e:
        if e.code == 503:
            return ServiceStatus.TRANSITIONING.value
        return ServiceStatus.UNHEALTHY.value
    except OSError:
        return ServiceStatus.UNHEALTHY.value


def post_score(attrs: dict[str, Any], body: Any, timeout: float = 60.0) -> tuple[int, bytes]:
    data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
    req = urllib.request.Request(
        attrs["url"].rstrip("/") + "/score",
        data=data,
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    if attrs.get("key"):
        req.add_header("Authorization", f"Bearer {attrs['key']}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def run_service_test(test: dict[str, Any], attrs: dict[str, Any]) -> None:
    status, body = post_score(attrs, test.get("request"))
    check_test_response(test, status, body)


def check_test_response(test: dict[str, Any], status: int, body: bytes) -> None:
    """Whether the answer ``status``/``body`` to a service's ``test:`` request is
    the expected one; ProviderError (with the response) when not. For targets
    that send the request their own way (through a cluster's API server)."""
    want = int(test.get("expect_status", 200))
    text = body.decode(errors="replace")
    if status != want:
        raise ProviderError(
            f"test request: expected status {want}, got {status}", log=f"response: {text[:2000]}"
        )
    if "expect" in test:
        try:
            got = json.loads(body)
        except ValueError:
            got = text
        if got != test["expect"]:
            raise ProviderError(
                "test request: output differs from expect",
                log=f"expected: {json.dumps(test['expect'])}\nresponse: {text[:2000]}",
            )


#: How long the check asks /ready before it calls a service not Healthy.
CHECK_SECONDS = 10.0


def http_check(resource: Resource, attrs: dict[str, Any], ctx: Context) -> Check:
    """The check of a scoring runtime reachable from here over HTTP (local
    processes, containers publishing on this machine): ``GET /ready`` must
    answer 200, then the service's ``test:`` request, if any, must pass.
    A target whose services this machine cannot reach checks them its own
    way (in the cluster, through the hub)."""
    url = attrs.get("url")
    if not isinstance(url, str):
        return Check(ok=False, status=ServiceStatus.UNHEALTHY.value, message="no URL to check")
    # Apply saw /ready answer 200 just before: a probe that times out now is
    # more likely a busy machine than a broken service, so it is asked again
    # for a few seconds before the verdict (each try bounded, Ctrl-C honoured).
    deadline = time.monotonic() + CHECK_SECONDS
    while True:
        status = readiness(url)
        if status == ServiceStatus.HEALTHY.value or time.monotonic() >= deadline:
            break
        ctx.sleep(0.2)
    if status != ServiceStatus.HEALTHY.value:
        return Check(
            ok=False,
            status=status,
            message=f"{url}/ready: the service is {status} (asked for {CHECK_SECONDS:.0f} s)",
        )
    test = resource.config.get("test")
    if test:
        ctx.log("running the service's test request")
        try:
            run_service_test(test, attrs)
        except ProviderError as e:
            return Check(ok=False, status=ServiceStatus.UNHEALTHY.value, message=str(e), log=e.log)
    return Check(ok=True, status=ServiceStatus.HEALTHY.value)
