"""A service's ``test:`` block, run against it right after apply.

``test: {request: <JSON>, expect_status: 200, expect: <JSON>}`` posts the
request to the service's ``/score`` route (with its key when ``auth: key``)
and fails the apply, showing the response, when the status or the output
differs from what is expected.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from modelform.engine.provider import ProviderError


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
