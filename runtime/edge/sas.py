"""Shared access signatures as IoT Hub and ``azure-iot-device`` make them.

A module's token (the MQTT password)::

    SharedAccessSignature sr=<url-encoded {hostname}/devices/{device}/modules/{module}>
        &sig=<url-encoded base64 HMAC-SHA256 of "{sr}\\n{se}" with the module key>&se=<expiry>

``sr`` is signed as it appears in the token (URL-encoded). ``verify``
returns the reason a token is refused, or None for a good one; it never
raises on client input.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
import urllib.parse

PREFIX = "SharedAccessSignature "


def resource_uri(hostname: str, device: str, module: str) -> str:
    return f"{hostname}/devices/{device}/modules/{module}"


def sign(key_b64: str, encoded_sr: str, expiry: int) -> str:
    digest = hmac.new(
        base64.b64decode(key_b64), f"{encoded_sr}\n{expiry}".encode(), hashlib.sha256
    ).digest()
    return base64.b64encode(digest).decode()


def make_token(key_b64: str, uri: str, expiry: int) -> str:
    """A token for ``uri`` valid until ``expiry`` (seconds since the epoch), as the SDK makes it."""
    encoded = urllib.parse.quote(uri, safe="")
    signature = urllib.parse.quote(sign(key_b64, encoded, expiry), safe="")
    return f"{PREFIX}sr={encoded}&sig={signature}&se={expiry}"


def parse_token(token: str) -> dict[str, str] | None:
    """The fields of a token (values as written, still URL-encoded), or None if malformed."""
    if not token.startswith(PREFIX):
        return None
    fields: dict[str, str] = {}
    for part in token[len(PREFIX) :].split("&"):
        name, sep, value = part.partition("=")
        if not sep or name in fields:
            return None
        fields[name] = value
    if not {"sr", "sig", "se"} <= fields.keys():
        return None
    return fields


def verify(token: str, key_b64: str, uri: str, now: float | None = None) -> str | None:
    """Why ``token`` does not grant ``uri`` with ``key_b64`` (None: it does)."""
    fields = parse_token(token)
    if fields is None:
        return "malformed token"
    if "skn" in fields:
        return "policy tokens (skn) are not accepted for modules"
    if urllib.parse.unquote(fields["sr"]).lower() != uri.lower():
        return "token is for another resource"
    try:
        expiry = int(fields["se"])
    except ValueError:
        return "malformed expiry"
    if expiry <= (time.time() if now is None else now):
        return "token expired"
    try:
        expected = sign(key_b64, fields["sr"], expiry)
        given = base64.b64decode(urllib.parse.unquote(fields["sig"]), validate=True)
    except (binascii.Error, ValueError):
        return "malformed signature"
    if not hmac.compare_digest(base64.b64decode(expected), given):
        return "bad signature"
    return None
