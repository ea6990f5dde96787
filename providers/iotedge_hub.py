"""Hub mode of the IoT Edge target: a device's deployment manifest sent to an
IoT Hub over its REST API, and the ``$edgeAgent`` twin's reported module
states read back.

UNTESTED AGAINST A LIVE IOT HUB. No hub is reachable where this was written:
the requests and answers follow Microsoft's documentation (cited below) and
the tests check them against a local HTTPS server that stands in for the
documented API. The first run against a real hub is its real test.

What is sent, as documented:

* ``POST https://{HostName}/devices/{deviceId}/applyConfigurationContent
  ?api-version=2021-04-12`` with the manifest, ``{"modulesContent": …}``, as
  its body; 204 No Content on success ("Configuration - Apply On Edge
  Device", https://learn.microsoft.com/rest/api/iothub/service/configuration/apply-on-edge-device).
* ``GET https://{HostName}/twins/{deviceId}/modules/$edgeAgent
  ?api-version=2021-04-12``: the module twin ("Modules - Get Twin",
  https://learn.microsoft.com/rest/api/iothub/service/modules/get-twin).
  Its ``properties.reported`` holds ``lastDesiredVersion``,
  ``lastDesiredStatus`` and each module's ``runtimeStatus``
  (https://learn.microsoft.com/azure/iot-edge/module-edgeagent-edgehub,
  https://github.com/Azure/iotedge/blob/main/doc/reported_states_during_deployment.md).
* Path segments are percent-encoded as Microsoft's generated service
  clients do (``$edgeAgent`` → ``%24edgeAgent``).
* ``Authorization: SharedAccessSignature sr=…&sig=…&se=…&skn=…``, a hub-level
  token made from the connection string's shared access policy
  (https://learn.microsoft.com/azure/iot-hub/authenticate-authorize-sas):
  ``sr`` the lower-case URL-encoding of the lower-case resource URI (the
  hub's host name), ``se`` the expiry in seconds since the epoch, ``sig`` the
  base64 HMAC-SHA256 of ``"{sr}\\n{se}"`` keyed with the base64-decoded
  policy key, ``skn`` the policy name. For a host name this is byte for byte
  what ``azure-iot-device``'s own token code makes (the tests compare).

Errors a user can cause (a connection string missing a part, a key the hub
refuses, a device it does not know, a hub it cannot reach) raise
:class:`HubError`, a :class:`~modelform.plugin.ProviderError` of one line.
The policy key is never in a message, a ``repr`` or a log line; the
registry passwords :func:`~.iotedge_manifest.with_credentials` fills in
exist only in the body of the one request that sends them.

This module must not import the engine or another provider: only
:mod:`modelform.plugin` and the manifest module beside it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import http.client
import json
import os
import re
import ssl
import time
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from modelform.plugin import ProviderError, ServiceStatus
from modelform.providers import iotedge_manifest as im

#: The REST API version the documentation gives for both operations.
API_VERSION = "2021-04-12"
#: How long a SAS token is valid (seconds); one is made per request.
TOKEN_TTL = 3600
#: Seconds to connect and then to wait for an answer.
DEFAULT_TIMEOUT = 30.0
EDGE_AGENT = "$edgeAgent"
#: ``runtimeStatus`` values the documentation lists; any other reads as "unknown".
RUNTIME_STATUSES = ("running", "stopped", "failed", "backoff", "unhealthy", "unknown")
#: ``lastDesiredStatus.code`` values documented for ``$edgeAgent``.
DESIRED_STATUS_CODES = {
    200: "applied",
    400: "the deployment could not be read (ConfigFormatError)",
    406: "the edge agent is not connected to the hub",
    412: "the deployment's schema version is not supported by the edge agent",
    417: "the edge agent has received no deployment yet",
    500: "applying the deployment failed",
}
_SERVICE_STATUS = {
    "running": ServiceStatus.HEALTHY,
    "backoff": ServiceStatus.TRANSITIONING,
    "unknown": ServiceStatus.TRANSITIONING,
    "stopped": ServiceStatus.UNHEALTHY,
    "unhealthy": ServiceStatus.UNHEALTHY,
    "failed": ServiceStatus.FAILED,
}
HOST_NAME, KEY_NAME, KEY = "HostName", "SharedAccessKeyName", "SharedAccessKey"
_FIELDS = (HOST_NAME, KEY_NAME, KEY)
_EXAMPLE = "HostName=<hub>.azure-devices.net;SharedAccessKeyName=<policy>;SharedAccessKey=<key>"
_HOST = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?(?::[0-9]{1,5})?$")
_ESCAPE = re.compile(r"%[0-9A-F]{2}")
#: IoT Hub's numeric error codes seen here, by name
#: (https://learn.microsoft.com/azure/iot-hub/troubleshoot-error-codes).
_ERROR_NAMES = {
    400001: "InvalidProtocolVersion",
    400004: "ArgumentInvalid",
    400402: "InvalidConfigurationContent",
    401002: "IotHubUnauthorizedAccess",
    401003: "IotHubUnauthorized",
    403002: "IotHubQuotaExceeded",
    403012: "DeviceDisabled",
    404001: "DeviceNotFound",
    404010: "ModuleNotFound",
    429001: "ThrottlingException",
}


class HubError(ProviderError):
    """A hub-mode step that failed: one line for the user, never a key."""


# -- the connection string -------------------------------------------------------
@dataclass(frozen=True)
class Hub:
    """An IoT Hub and the shared access policy to act with. ``source`` names
    where it came from (an environment variable) for messages; the key is
    left out of ``repr``."""

    host: str
    policy: str
    key: str = field(repr=False)
    source: str = "the connection string"


def parse_connection_string(text: str, source: str = "the connection string") -> Hub:
    """Read ``HostName=…;SharedAccessKeyName=…;SharedAccessKey=…`` (fields in
    any order, a trailing ``;`` allowed). Raises :class:`HubError` naming
    what is missing or wrong, never quoting a value."""
    fields: dict[str, str] = {}
    text = text.strip()
    if len(text) > 1 and text[0] == text[-1] and text[0] in "'\"":
        text = text[1:-1]  # quoted once too often in a shell or .env file
    parts = [p for p in text.split(";") if p.strip()]
    if not parts:
        raise HubError(f"{source} is empty; an IoT Hub connection string reads {_EXAMPLE}")
    for i, part in enumerate(parts, 1):
        name, sep, value = part.partition("=")
        name = name.strip()
        if not sep or not name:
            raise HubError(
                f"{source}: part {i} of {len(parts)} is not Name=value; "
                f"an IoT Hub connection string reads {_EXAMPLE}"
            )
        if name in fields:
            raise HubError(f"{source} has {name if name in _FIELDS else 'a field'} twice")
        fields[name] = value.strip()
    if "DeviceId" in fields or "ModuleId" in fields:
        which = "module" if "ModuleId" in fields else "device"
        raise HubError(
            f"{source} is a {which} connection string; hub mode needs the hub's own, of a "
            "shared access policy (az iot hub connection-string show --hub-name <hub> "
            "--policy-name iothubowner)"
        )
    if "SharedAccessSignature" in fields:
        raise HubError(
            f"{source} carries a ready-made SharedAccessSignature; hub mode signs its own "
            f"tokens and needs the policy's key: {_EXAMPLE}"
        )
    for i, name in enumerate(fields, 1):
        if name in _FIELDS:
            continue
        # A name is quoted only when it is a known one misspelt in case: an
        # unknown "name" may be a pasted key (base64 ends with '=').
        known = next((f for f in _FIELDS if f.lower() == name.lower()), None)
        what = f"has {name} where {known} is meant" if known else f"part {i} is no known field"
        raise HubError(f"{source} {what} (the fields: {', '.join(_FIELDS)})")
    missing = [n for n in _FIELDS if not fields.get(n)]
    if missing:
        names = missing[-1] if len(missing) == 1 else f"{', '.join(missing[:-1])} and {missing[-1]}"
        raise HubError(f"{source} lacks {names}; an IoT Hub connection string reads {_EXAMPLE}")
    host = fields[HOST_NAME]
    if not _HOST.match(host):
        raise HubError(  # not quoted: it may be a key pasted in the wrong place
            f"{source}: HostName is not a host name; write the hub's, e.g. "
            "myhub.azure-devices.net, without https:// or a path"
        )
    try:
        key = base64.b64decode(fields[KEY], validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if not key:
        raise HubError(f"{source}: SharedAccessKey is not a base64 key (copy it again)")
    return Hub(host, fields[KEY_NAME], fields[KEY], source)


def hub_from_env(name: str, environ: Mapping[str, str] | None = None) -> Hub:
    """The hub of the connection string in environment variable ``name``
    (``hub: {connection_string_env: NAME}``). Raises :class:`HubError` when
    it is not set or not a hub connection string."""
    env = os.environ if environ is None else environ
    text = env.get(name)
    if text is None:
        raise HubError(
            f"environment variable {name} is not set; it must hold the IoT Hub "
            f"connection string ({_EXAMPLE})"
        )
    return parse_connection_string(text, source=f"environment variable {name}")


# -- shared access signatures -----------------------------------------------------
def encode_resource(uri: str) -> str:
    """The ``sr`` of a token: the lower-case URL-encoding of the lower-case
    resource URI (``myhub.azure-devices.net%2fdevices%2fdevice1``)."""
    encoded = urllib.parse.quote(uri.lower(), safe="")
    return _ESCAPE.sub(lambda m: m[0].lower(), encoded)


def signature(key_b64: str, sr: str, expiry: int) -> str:
    """Base64 of the HMAC-SHA256 of ``"{sr}\\n{expiry}"`` keyed with the
    base64-decoded key."""
    digest = hmac.new(base64.b64decode(key_b64), f"{sr}\n{expiry}".encode(), hashlib.sha256)
    return base64.b64encode(digest.digest()).decode()


def sas_token(
    hub: Hub, now: float | None = None, ttl: int = TOKEN_TTL, resource: str | None = None
) -> str:
    """A token for ``resource`` (default: the hub, which is what service
    calls need) valid ``ttl`` seconds from ``now``, signed with the hub's
    policy key and naming the policy::

        SharedAccessSignature sr={sr}&sig={url-encoded sig}&se={expiry}&skn={policy}
    """
    sr = encode_resource(resource or hub.host)
    expiry = int((time.time() if now is None else now) + ttl)
    sig = urllib.parse.quote(signature(hub.key, sr, expiry), safe="")
    skn = urllib.parse.quote(hub.policy, safe="")
    return f"SharedAccessSignature sr={sr}&sig={sig}&se={expiry}&skn={skn}"


# -- the transport ---------------------------------------------------------------
@dataclass(frozen=True)
class Response:
    status: int
    headers: Mapping[str, str]  # names lower-cased
    body: bytes


class Transport:
    """HTTPS requests to a hub (``https://{HostName}``), one connection per
    request. ``base_url`` sends them elsewhere (``https://127.0.0.1:8443``:
    the tests' stand-in for the documented API) and ``context`` sets the
    TLS trust (default: the system's CAs)."""

    def __init__(
        self,
        base_url: str | None = None,
        context: ssl.SSLContext | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.base_url = base_url.rstrip("/") if base_url else None
        self.context = context
        self.timeout = timeout

    def url(self, hub: Hub, path: str) -> str:
        return (self.base_url or f"https://{hub.host}") + path

    def request(
        self, hub: Hub, method: str, path: str, headers: Mapping[str, str], body: bytes | None
    ) -> Response:
        """One request; the answer whatever its status. ``OSError`` (refused,
        unresolvable, timed out, TLS) passes through."""
        url = urllib.parse.urlsplit(self.url(hub, path))
        target = url.path + (f"?{url.query}" if url.query else "")
        conn: http.client.HTTPConnection
        if url.scheme == "http":
            conn = http.client.HTTPConnection(url.hostname or "", url.port, timeout=self.timeout)
        else:
            context = self.context or ssl.create_default_context()
            conn = http.client.HTTPSConnection(
                url.hostname or "", url.port, timeout=self.timeout, context=context
            )
        try:
            conn.request(method, target, body=body, headers=dict(headers))
            answer = conn.getresponse()
            data = answer.read()
            return Response(answer.status, {k.lower(): v for k, v in answer.getheaders()}, data)
        finally:
            conn.close()


# -- calls -----------------------------------------------------------------------
def _path(*segments: str) -> str:
    return "/" + "/".join(urllib.parse.quote(s, safe="") for s in segments)


def _call(
    hub: Hub,
    method: str,
    segments: tuple[str, ...],
    body: bytes | None,
    what: str,
    transport: Transport | None,
) -> Response:
    transport = transport or Transport()
    path = _path(*segments) + "?" + urllib.parse.urlencode({"api-version": API_VERSION})
    headers = {
        "Authorization": sas_token(hub),
        "Accept": "application/json",
        "User-Agent": "modelform",
    }
    if body is not None:
        headers["Content-Type"] = "application/json; charset=utf-8"
    try:
        return transport.request(hub, method, path, headers, body)
    except ssl.SSLCertVerificationError as e:
        reason = e.verify_message or e.reason or "certificate verify failed"
        raise HubError(f"cannot {what}: TLS with {hub.host} failed ({reason})") from None
    except TimeoutError:
        raise HubError(
            f"cannot {what}: IoT Hub {hub.host} did not answer within {transport.timeout:g} s"
        ) from None
    except (OSError, http.client.HTTPException) as e:
        reason = getattr(e, "strerror", None) or str(e) or type(e).__name__
        raise HubError(f"cannot {what}: IoT Hub {hub.host} is unreachable ({reason})") from None


def hub_error_detail(response: Response) -> tuple[str, str]:
    """The error code (a name such as ``DeviceNotFound`` when known) and the
    message of a hub's error answer, from any of the shapes it sends:
    ``{"Message": "ErrorCode:<name>;<text>", "ExceptionMessage": …}``, that
    with a JSON object inside ``Message``, or ``{"errorCode": 404001,
    "message": …}``; the ``iothub-errorcode`` header when the body has none."""
    code, message = response.headers.get("iothub-errorcode", ""), ""
    try:
        doc: Any = json.loads(response.body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        doc = None
    if isinstance(doc, dict) and isinstance(doc.get("Message"), str):
        inner = doc["Message"]
        try:
            nested = json.loads(inner)
        except ValueError:
            nested = None
        if isinstance(nested, dict):
            doc = nested
        else:
            m = re.match(r"\s*ErrorCode:\s*([A-Za-z0-9]+)\s*;?\s*(.*)", inner, re.DOTALL)
            code, message = (m[1], m[2]) if m else (code, inner)
    if isinstance(doc, dict) and ("errorCode" in doc or "message" in doc):
        number = doc.get("errorCode")
        if isinstance(number, int):
            code = _ERROR_NAMES.get(number, str(number))
        elif isinstance(number, str) and number:
            code = number
        message = str(doc.get("message") or message)
    if not message and not isinstance(doc, dict):
        message = response.body[:200].decode("utf-8", "replace")
    message = " ".join(message.split())
    return code, message[:300] + ("…" if len(message) > 300 else "")


def _fail(response: Response, hub: Hub, device_id: str, what: str) -> HubError:
    code, message = hub_error_detail(response)
    status = f"{response.status} {code}".strip()
    said = f": {message}" if message else ""
    if response.status == 401:
        hint = (
            f"IoT Hub {hub.host} refused the SAS token of policy {hub.policy} ({status}{said}); "
            f"check the key in {hub.source}, that the policy grants this (iothubowner grants "
            "all) and that this machine's clock is right"
        )
    elif response.status == 404 and code in ("DeviceNotFound", ""):
        hint = (
            f"IoT Hub {hub.host} has no device {device_id} ({status}{said}); register it as an "
            f"IoT Edge device (az iot hub device-identity create --device-id {device_id} "
            "--edge-enabled)"
        )
    elif response.status == 404 and code == "ModuleNotFound":
        hint = (
            f"device {device_id} on IoT Hub {hub.host} has no {EDGE_AGENT} module twin "
            f"({status}{said}); is it an IoT Edge device (--edge-enabled)?"
        )
    elif response.status == 429 or response.status >= 500:
        hint = f"IoT Hub {hub.host} answered {status}{said}; try again later"
    else:
        hint = f"IoT Hub {hub.host} answered {status}{said}"
    return HubError(f"cannot {what}: {hint}")


def apply_configuration(
    hub: Hub,
    device_id: str,
    manifest: Mapping[str, Any],
    environ: Mapping[str, str] | None = None,
    transport: Transport | None = None,
) -> str:
    """Send a device's deployment manifest to the hub (Apply On Edge Device).
    ``manifest`` is the one the package and the state keep, registry
    credentials by reference: they are filled in from ``environ`` (default
    ``os.environ``) for this request alone. Returns the manifest's digest
    (:func:`~.iotedge_manifest.manifest_digest`, of the manifest as given).
    Raises :class:`HubError`: a manifest the shipped schema refuses, a
    credential variable not set, or the hub's refusal."""
    problems = im.validate(manifest)
    if problems:
        raise HubError(f"the manifest for device {device_id} is not valid: {problems[0]}")
    try:
        filled = im.with_credentials(manifest, os.environ if environ is None else environ)
    except im.ManifestError as e:
        raise HubError(f"cannot send the manifest for device {device_id}: {e}") from None
    body = im.canonical_json({"modulesContent": filled["modulesContent"]}).encode("utf-8")
    what = f"apply the manifest to device {device_id}"
    answer = _call(
        hub, "POST", ("devices", device_id, "applyConfigurationContent"), body, what, transport
    )
    if not 200 <= answer.status < 300:
        raise _fail(answer, hub, device_id, what)
    return im.manifest_digest(manifest)


# -- what the edge agent reports -----------------------------------------------------
@dataclass(frozen=True)
class ModuleReport:
    """One module as ``$edgeAgent`` reports it. ``runtime_status`` is one of
    :data:`RUNTIME_STATUSES`; ``image`` the image the container runs."""

    name: str
    runtime_status: str
    status_description: str | None = None
    exit_code: int | None = None
    image: str | None = None
    desired_status: str | None = None
    restart_count: int | None = None
    last_start_time: str | None = None
    last_exit_time: str | None = None

    @property
    def service_status(self) -> ServiceStatus:
        """The service state this runtime status maps to: running → Healthy,
        backoff and unknown → Transitioning, stopped and unhealthy →
        Unhealthy, failed → Failed."""
        return _SERVICE_STATUS[self.runtime_status]


@dataclass(frozen=True)
class EdgeAgentReport:
    """The ``$edgeAgent`` twin of a device: the desired properties' version
    the hub holds, the last one the agent processed and how that went, and
    each module's reported state (``modules``: the deployment's;
    ``system_modules``: edgeAgent and edgeHub)."""

    device_id: str
    desired_version: int | None
    last_desired_version: int | None
    last_desired_code: int | None
    last_desired_description: str
    modules: dict[str, ModuleReport]
    system_modules: dict[str, ModuleReport]

    @property
    def applied(self) -> bool:
        """The agent has processed the latest desired properties, with 200."""
        return (
            self.desired_version is not None
            and self.last_desired_version == self.desired_version
            and self.last_desired_code == 200
        )

    @property
    def status_text(self) -> str:
        """``lastDesiredStatus`` in words (the documented meaning of its code)."""
        if self.last_desired_code is None:
            return "the edge agent has reported nothing yet"
        meaning = DESIRED_STATUS_CODES.get(self.last_desired_code, "unknown status")
        extra = f" ({self.last_desired_description})" if self.last_desired_description else ""
        return f"{self.last_desired_code}: {meaning}{extra}"


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _obj(value: Any) -> Mapping[str, Any]:
    """``value`` when it is a JSON object, else an empty one."""
    return value if isinstance(value, Mapping) else {}


def _module(name: str, entry: Any) -> ModuleReport:
    e = _obj(entry)
    status = str(e.get("runtimeStatus", "unknown")).lower()
    return ModuleReport(
        name=name,
        runtime_status=status if status in RUNTIME_STATUSES else "unknown",
        status_description=_str(e.get("statusDescription")),
        exit_code=_int(e.get("exitCode")),
        image=_str(_obj(e.get("settings")).get("image")),
        desired_status=_str(e.get("status")),
        restart_count=_int(e.get("restartCount")),
        last_start_time=_str(e.get("lastStartTimeUtc")),
        last_exit_time=_str(e.get("lastExitTimeUtc")),
    )


def parse_edge_agent_twin(twin: Mapping[str, Any], device_id: str | None = None) -> EdgeAgentReport:
    """Read an ``$edgeAgent`` module twin (the Get Twin answer). A twin the
    agent has not reported to yet gives no modules and no versions."""
    props = _obj(twin.get("properties"))
    desired, reported = _obj(props.get("desired")), _obj(props.get("reported"))
    last = _obj(reported.get("lastDesiredStatus"))
    sections = {
        key: {str(n): _module(str(n), e) for n, e in sorted(_obj(reported.get(key)).items())}
        for key in ("modules", "systemModules")
    }
    return EdgeAgentReport(
        device_id=device_id or str(twin.get("deviceId", "")),
        desired_version=_int(desired.get("$version")),
        last_desired_version=_int(reported.get("lastDesiredVersion")),
        last_desired_code=_int(last.get("code")),
        last_desired_description=str(last.get("description") or ""),
        modules=sections["modules"],
        system_modules=sections["systemModules"],
    )


def edge_agent_reported(
    hub: Hub, device_id: str, transport: Transport | None = None
) -> EdgeAgentReport:
    """Read the device's ``$edgeAgent`` module twin (Modules - Get Twin) and
    what it reports. Raises :class:`HubError` when the hub refuses or does
    not answer, or answers with something that is not a twin."""
    what = f"read the {EDGE_AGENT} twin of device {device_id}"
    answer = _call(hub, "GET", ("twins", device_id, "modules", EDGE_AGENT), None, what, transport)
    if answer.status != 200:
        raise _fail(answer, hub, device_id, what)
    try:
        twin = json.loads(answer.body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        twin = None
    if not isinstance(twin, dict):
        raise HubError(f"cannot {what}: IoT Hub {hub.host} answered 200 with no JSON object")
    return parse_edge_agent_twin(twin, device_id)
