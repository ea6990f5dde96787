"""Hub mode of the IoT Edge target (providers/iotedge_hub.py), tested against a
STAND-IN for IoT Hub's documented REST API, not a live hub.

No IoT Hub is reachable here, so :class:`DocumentedHub` plays one: an HTTPS
server on 127.0.0.1 (a throwaway CA made by the edge runtime's certs module)
that accepts exactly what Microsoft documents and answers with the documented
bodies:

* Configuration - Apply On Edge Device: ``POST /devices/{id}/applyConfigurationContent
  ?api-version=2021-04-12``, a ConfigurationContent body, 204 No Content
  (https://learn.microsoft.com/rest/api/iothub/service/configuration/apply-on-edge-device);
  the body must also pass the shipped deployment schema (iotedge_manifest.validate).
* Modules - Get Twin: ``GET /twins/{id}/modules/{mid}?api-version=2021-04-12``, 200 and
  the Twin (https://learn.microsoft.com/rest/api/iothub/service/modules/get-twin), its
  top level as in https://learn.microsoft.com/azure/iot-edge/how-to-monitor-module-twins
  and its reported properties as in
  https://github.com/Azure/iotedge/blob/main/doc/reported_states_during_deployment.md.
* The SAS token, recomputed the way the Python example of
  https://learn.microsoft.com/azure/iot-hub/authenticate-authorize-sas does it.
* Errors: codes from https://learn.microsoft.com/azure/iot-hub/troubleshoot-error-codes;
  the REST reference documents no error body, so the bodies are the shapes IoT Hub
  was seen to send in Azure SDK issues (azure-iot-sdks#711, azure-iot-sdk-csharp#3442).

What a live hub does beyond these pages (its permission checks, the answer for a
device that is not edge-enabled, throttling) is not tested here.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib import parse

import pytest

from modelform.plugin import ProviderError, ServiceStatus
from modelform.providers import iotedge_hub as ih
from modelform.providers import iotedge_manifest as im
from modelform.runtime.edge import certs

DOCUMENTED_API_VERSION = "2021-04-12"
HOST = "MyHub.azure-devices.net"  # mixed case: the token's resource is lower-cased
POLICY = "iothubowner"
KEY = base64.b64encode(hashlib.sha256(b"modelform test policy key").digest()).decode()
CONNECTION_STRING = f"HostName={HOST};SharedAccessKeyName={POLICY};SharedAccessKey={KEY}"
DEVICE = "line-7"
SIGNED = "SharedAccessSignature sr=x&sig=y&se=1"
SENSOR_TO_MODEL = (
    "FROM /messages/modules/sensor/outputs/rows "
    'INTO BrokeredEndpoint("/modules/diabetes/inputs/rows")'
)
MODEL_UP = "FROM /messages/modules/diabetes/outputs/predictions INTO $upstream"


def a_manifest() -> dict[str, Any]:
    runtime = im.Runtime(
        registry_credentials=(im.RegistryCredential("acr", "x.azurecr.io", "ACR_USER", "ACR_PW"),)
    )
    modules = [
        im.Module("sensor", "x.azurecr.io/sensor:1", env={"INTERVAL": "0.1"}),
        im.Module(
            "diabetes",
            "x.azurecr.io/diabetes:3",
            create_options={"HostConfig": {"Memory": 536870912}},
            desired_properties={"threshold": 0.5},
        ),
    ]
    routes = [im.RouteSpec("sensorToModel", SENSOR_TO_MODEL), im.RouteSpec("up", MODEL_UP)]
    return im.manifest(runtime, modules, routes)


CREDENTIALS = {"ACR_USER": "acr-user", "ACR_PW": "acr-password-123"}


# -- the documented answers ----------------------------------------------------------
def documented_twin_top(device: str) -> dict[str, Any]:
    """The top of a module twin as how-to-monitor-module-twins shows ``$edgeAgent``'s."""
    return {
        "deviceId": device,
        "moduleId": "$edgeAgent",
        "etag": "AAAAAAAAAAU=",
        "deviceEtag": "NzgwNjA1MDUz",
        "status": "enabled",
        "statusUpdateTime": "0001-01-01T00:00:00Z",
        "connectionState": "Disconnected",
        "lastActivityTime": "0001-01-01T00:00:00Z",
        "cloudToDeviceMessageCount": 0,
        "authenticationType": "sas",
        "x509Thumbprint": {"primaryThumbprint": None, "secondaryThumbprint": None},
        "version": 53,
    }


def documented_reported() -> dict[str, Any]:
    """``properties.reported`` of the example in Azure/iotedge's
    doc/reported_states_during_deployment.md, as written there."""
    edge_hub_options = (
        '{"HostConfig":{"PortBindings":{"443/tcp":[{"HostPort":"443"}],'
        '"5671/tcp":[{"HostPort":"5671"}],"8883/tcp":[{"HostPort":"8883"}]}}}'
    )
    return {
        "lastDesiredVersion": 11,
        "lastDesiredStatus": {"code": 406, "description": "Agent is not running"},
        "schemaVersion": "1.0",
        "version": {
            "version": "1.1.3",
            "build": "42832849",
            "commit": "68e71a5384b14956775241557877497274d0ce7e",
        },
        "runtime": {
            "platform": {"os": "linux", "architecture": "x86_64", "version": "1.1.3"},
            "type": "docker",
            "settings": {"minDockerVersion": "v1.25", "registryCredentials": {}},
        },
        "systemModules": {
            "edgeHub": {
                "type": "docker",
                "status": "running",
                "restartPolicy": "always",
                "exitCode": 0,
                "statusDescription": "running",
                "lastStartTimeUtc": "2021-06-12T00:27:46.3838704",
                "lastExitTimeUtc": "2021-06-12T00:26:39.2078664",
                "restartCount": 0,
                "lastRestartTimeUtc": "2021-06-12T00:26:39.2078664",
                "runtimeStatus": "unknown",
                "settings": {
                    "image": "mcr.microsoft.com/azureiotedge-hub:1.1",
                    "imageHash": "sha256:"
                    "dd0d4897a65fae460909e497386606b5cd7a2ad7ae0605f5bb766644e352fac3",
                    "createOptions": edge_hub_options,
                },
            },
            "edgeAgent": {
                "type": "docker",
                "startupOrder": 0,
                "exitCode": 0,
                "statusDescription": "running",
                "lastStartTimeUtc": "2021-06-12T00:27:35.4200863",
                "lastExitTimeUtc": "2021-06-12T00:26:39.6337272",
                "runtimeStatus": "unknown",
                "imagePullPolicy": "on-create",
                "settings": {
                    "image": "mcr.microsoft.com/azureiotedge-agent:1.1",
                    "imageHash": "sha256:"
                    "f0eda4eb5fd4aecbc0d260cf9e31eb88d58db9483fc2d54425e820c94fe6dd08",
                    "createOptions": "{}",
                },
            },
        },
        "modules": {
            "m1": {
                "exitCode": 0,
                "statusDescription": "running",
                "lastStartTimeUtc": "2021-06-12T00:27:43.9269859",
                "lastExitTimeUtc": "2021-06-12T00:26:29.1405344",
                "restartCount": 0,
                "lastRestartTimeUtc": "2021-06-12T00:26:29.1405344",
                "runtimeStatus": "unknown",
                "version": "1.0",
                "status": "running",
                "restartPolicy": "always",
                "imagePullPolicy": "on-create",
                "type": "docker",
                "settings": {
                    "image": "mcr.microsoft.com/azureiotedge-simulated-temperature-sensor:1.1",
                    "imageHash": "sha256:"
                    "85fdb1e9675c837c18b75f103be6f156587d1058eced1fc508cdb84a722e4f82",
                    "createOptions": "{}",
                },
                "env": {},
            }
        },
        "$version": 196,
    }


def reported_module(status: str, image: str, exit_code: int = 0) -> dict[str, Any]:
    """One module of ``properties.reported.modules`` in the documented shape."""
    return {
        "exitCode": exit_code,
        "statusDescription": status,
        "lastStartTimeUtc": "2021-06-12T00:27:43.9269859",
        "lastExitTimeUtc": "2021-06-12T00:26:29.1405344",
        "restartCount": 2,
        "lastRestartTimeUtc": "2021-06-12T00:26:29.1405344",
        "runtimeStatus": status,
        "version": "1.0",
        "status": "running",
        "restartPolicy": "always",
        "type": "docker",
        "settings": {"image": image, "createOptions": "{}"},
        "env": {},
    }


def tracking_id() -> str:
    return "e4cb4b6c18f4462fbe2c1a2d02d7dbe4-G:11-TimeStamp:07/16/2016 00:12:41"


def old_style_error(code: str, text: str) -> dict[str, str]:
    """``{"Message":"ErrorCode:<name>;<text>","ExceptionMessage":"Tracking ID:…"}``."""
    return {
        "Message": f"ErrorCode:{code};{text}",
        "ExceptionMessage": f"Tracking ID:{tracking_id()}",
    }


def new_style_error(number: int, text: str) -> dict[str, Any]:
    """``{"errorCode": 404010, "trackingId": …, "message": …, "timestampUtc": …}``."""
    return {
        "errorCode": number,
        "trackingId": tracking_id(),
        "message": text,
        "timestampUtc": "2024-03-14T09:54:49.6536567Z",
    }


# -- the stand-in hub -----------------------------------------------------------------
@dataclass
class Device:
    edge: bool = True
    applied: list[dict[str, Any]] = field(default_factory=list)
    desired_version: int = 1
    reported: dict[str, Any] = field(default_factory=dict)


@dataclass
class Seen:
    method: str
    raw_path: str
    headers: dict[str, str]
    body: bytes
    answer: int


def documented_token_problem(header: str | None, host: str, policy: str, key: str) -> str | None:
    """Why a token does not grant hub-level access, recomputing its signature
    as the Python example of the SAS documentation does (None: it does)."""
    prefix = "SharedAccessSignature "
    if not header or not header.startswith(prefix):
        return "Authorization header missing"
    try:
        fields = dict(p.split("=", 1) for p in header[len(prefix) :].split("&"))
    except ValueError:
        return "malformed token"
    if set(fields) != {"sr", "sig", "se", "skn"}:
        return f"fields {sorted(fields)}"
    if fields["skn"] != policy:
        return f"policy {fields['skn']}"
    uri = host.lower()  # the lower-case resource URI: hub-level tokens name the host
    if fields["sr"] != parse.quote_plus(uri).lower():
        return f"resource {fields['sr']}"
    ttl = int(fields["se"])
    if ttl <= time.time():
        return "expired"
    sign_key = "%s\n%d" % ((parse.quote_plus(uri)), int(ttl))  # noqa: UP031 (the docs' example)
    signature = base64.b64encode(
        hmac.HMAC(base64.b64decode(key), sign_key.encode("utf-8"), hashlib.sha256).digest()
    )
    if parse.unquote(fields["sig"]) != signature.decode():
        return "bad signature"
    return None


class DocumentedHub:
    """A stand-in for IoT Hub's documented REST API on 127.0.0.1 (HTTPS): it
    records every request, checks it against the documented shapes and
    answers as documented. ``problems`` lists what did not conform."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self.devices: dict[str, Device] = {DEVICE: Device()}
        self.seen: list[Seen] = []
        self.problems: list[str] = []
        self.key = KEY
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                hub.handle(self, "POST")

            def do_GET(self) -> None:
                hub.handle(self, "GET")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)

    def handle(self, request: BaseHTTPRequestHandler, method: str) -> None:
        length = int(request.headers.get("Content-Length") or 0)
        body = request.rfile.read(length) if length else b""
        status, answer, headers = self.route(request, method, body)
        self.seen.append(Seen(method, request.path, dict(request.headers), body, status))
        data = b"" if answer is None else json.dumps(answer).encode()
        request.send_response(status)
        for name, value in headers.items():
            request.send_header(name, value)
        if status != 204:
            request.send_header("Content-Type", "application/json; charset=utf-8")
            request.send_header("Content-Length", str(len(data)))
        request.end_headers()
        if status != 204:
            request.wfile.write(data)

    def route(
        self, request: BaseHTTPRequestHandler, method: str, body: bytes
    ) -> tuple[int, Any, dict[str, str]]:
        url = parse.urlsplit(request.path)
        query = parse.parse_qs(url.query)
        if query.get("api-version") != [DOCUMENTED_API_VERSION]:
            self.problems.append(f"api-version {query.get('api-version')}")
            return 400, new_style_error(400001, "Invalid protocol version"), {}
        problem = documented_token_problem(
            request.headers.get("Authorization"), HOST, POLICY, self.key
        )
        if problem:
            return (
                401,
                old_style_error("IotHubUnauthorizedAccess", "Unauthorized"),
                {"iothub-errorcode": "IotHubUnauthorizedAccess"},
            )
        segments = [parse.unquote(s) for s in url.path.split("/")[1:]]
        if (
            method == "POST"
            and len(segments) == 3
            and segments[::2]
            == [
                "devices",
                "applyConfigurationContent",
            ]
        ):
            return self.apply(request, segments[1], body)
        if method == "GET" and len(segments) == 4 and segments[::2] == ["twins", "modules"]:
            return self.twin(segments[1], segments[3])
        self.problems.append(f"not a documented operation: {method} {url.path}")
        return 404, new_style_error(404000, "The requested resource isn't found."), {}

    def apply(
        self, request: BaseHTTPRequestHandler, device_id: str, body: bytes
    ) -> tuple[int, Any, dict[str, str]]:
        if not (request.headers.get("Content-Type") or "").startswith("application/json"):
            self.problems.append(f"Content-Type {request.headers.get('Content-Type')}")
        try:
            content = json.loads(body)
        except ValueError:
            content = None
        # ConfigurationContent: deviceContent, moduleContent, modulesContent (objects).
        if not isinstance(content, dict) or not set(content) <= {
            "deviceContent",
            "moduleContent",
            "modulesContent",
        }:
            self.problems.append("the body is not a ConfigurationContent")
            return 400, new_style_error(400402, "Invalid configuration content"), {}
        errors = im.validate(content)
        if errors:
            self.problems += errors
            return 400, new_style_error(400402, f"Invalid configuration content: {errors[0]}"), {}
        device = self.devices.get(device_id)
        if device is None:
            return (
                404,
                old_style_error("DeviceNotFound", f"Device {device_id} not registered"),
                {"iothub-errorcode": "DeviceNotFound"},
            )
        device.applied.append(content)
        device.desired_version += 1
        return 204, None, {}

    def twin(self, device_id: str, module_id: str) -> tuple[int, Any, dict[str, str]]:
        device = self.devices.get(device_id)
        if device is None:
            return (
                404,
                old_style_error("DeviceNotFound", f"Device {device_id} not registered"),
                {"iothub-errorcode": "DeviceNotFound"},
            )
        if module_id != "$edgeAgent" or not device.edge:
            return 404, new_style_error(404010, f"Module {module_id} not found"), {}
        desired: dict[str, Any] = {}
        if device.applied:
            desired = copy.deepcopy(
                device.applied[-1]["modulesContent"]["$edgeAgent"]["properties.desired"]
            )
        desired["$version"] = device.desired_version
        reported = copy.deepcopy(device.reported)
        twin = documented_twin_top(device_id)
        twin["properties"] = {"desired": desired, "reported": reported}
        return 200, twin, {}


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A throwaway CA and a server certificate for 127.0.0.1: the stand-in's
    TLS context and a client context that trusts that CA alone."""
    folder: Path = tmp_path_factory.mktemp("hub-tls")
    certs.ensure(folder, certs.names_for("127.0.0.1"))
    client = ssl.create_default_context(cafile=str(folder / certs.CA))
    return certs.server_context(folder), client


@pytest.fixture
def stand_in(tls: tuple[ssl.SSLContext, ssl.SSLContext]) -> Iterator[DocumentedHub]:
    hub = DocumentedHub(tls[0])
    try:
        yield hub
    finally:
        hub.stop()


@pytest.fixture
def transport(stand_in: DocumentedHub, tls: tuple[ssl.SSLContext, ssl.SSLContext]) -> ih.Transport:
    return ih.Transport(f"https://127.0.0.1:{stand_in.port}", context=tls[1], timeout=10)


def the_hub() -> ih.Hub:
    return ih.parse_connection_string(CONNECTION_STRING, "environment variable IOTHUB_CS")


# -- the connection string ----------------------------------------------------------
def test_a_hub_connection_string_is_read_in_any_order_and_its_key_stays_out_of_repr() -> None:
    text = f' "SharedAccessKey={KEY};HostName={HOST};SharedAccessKeyName={POLICY};" '
    hub = ih.parse_connection_string(text, "environment variable IOTHUB_CS")
    assert (hub.host, hub.policy, hub.key) == (HOST, POLICY, KEY)
    assert KEY not in repr(hub) and KEY not in str(hub)
    assert ih.hub_from_env("IOTHUB_CS", {"IOTHUB_CS": CONNECTION_STRING}) == hub


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "is empty"),
        (f"HostName={HOST}", "lacks SharedAccessKeyName and SharedAccessKey"),
        (f"HostName={HOST};SharedAccessKey={KEY}", "lacks SharedAccessKeyName;"),
        (f"SharedAccessKeyName={POLICY};SharedAccessKey={KEY}", "lacks HostName;"),
        (
            f"HostName={HOST};SharedAccessKeyName=;SharedAccessKey={KEY}",
            "lacks SharedAccessKeyName",
        ),
        (f"HostName={HOST};DeviceId=d1;SharedAccessKey={KEY}", "is a device connection string"),
        (
            f"HostName={HOST};DeviceId=d1;ModuleId=m;SharedAccessKey={KEY}",
            "is a module connection string",
        ),
        (f"HostName=https://{HOST}/;SharedAccessKeyName=p;SharedAccessKey={KEY}", "not a host"),
        (f"HostName={HOST};SharedAccessKeyName=p;SharedAccessKey={KEY[:-3]}!", "not a base64 key"),
        (
            f"Hostname={HOST};SharedAccessKeyName=p;SharedAccessKey={KEY}",
            "has Hostname where HostName is meant",
        ),
        (
            f"HostName={HOST};HostName=x;SharedAccessKeyName=p;SharedAccessKey={KEY}",
            "HostName twice",
        ),
        (f"HostName={KEY};SharedAccessKeyName=p;SharedAccessKey={KEY}", "HostName is not a host"),
        (f"HostName={HOST};{KEY}", "part 2 is no known field"),
        (f"HostName={HOST};{KEY[:-1]}", "part 2 of 2 is not Name=value"),
        (
            f"HostName={HOST};SharedAccessKeyName=p;SharedAccessSignature={SIGNED}",
            "ready-made SharedAccessSignature",
        ),
    ],
)
def test_a_wrong_connection_string_is_one_line_naming_what_is_wrong_never_the_key(
    text: str, expected: str
) -> None:
    with pytest.raises(ProviderError) as caught:
        ih.parse_connection_string(text, "environment variable IOTHUB_CS")
    message = str(caught.value)
    assert expected in message
    assert message.startswith("environment variable IOTHUB_CS")
    assert "\n" not in message
    assert KEY[:12] not in message and KEY[-12:] not in message


def test_an_unset_variable_is_named() -> None:
    with pytest.raises(ih.HubError, match="environment variable IOTHUB_CS is not set"):
        ih.hub_from_env("IOTHUB_CS", {})


# -- the SAS token ---------------------------------------------------------------------
def test_the_token_is_what_azure_iot_device_makes_for_the_hub() -> None:
    """Cross-checked against the SDK's own token code (RenewableSasToken with
    a symmetric key), for a hub-level resource."""
    from azure.iot.device.common.auth.sastoken import RenewableSasToken
    from azure.iot.device.common.auth.signing_mechanism import SymmetricKeySigningMechanism

    hub = the_hub()
    sdk = RenewableSasToken(
        HOST.lower(), SymmetricKeySigningMechanism(KEY), key_name=POLICY, ttl=ih.TOKEN_TTL
    )
    assert ih.sas_token(hub, now=sdk.expiry_time - ih.TOKEN_TTL) == str(sdk)


def test_the_token_has_the_documented_structure() -> None:
    hub = the_hub()
    token = ih.sas_token(hub, now=1_456_970_000)
    assert token.startswith("SharedAccessSignature ")
    fields = dict(p.split("=", 1) for p in token.split(" ", 1)[1].split("&"))
    assert list(fields) == ["sr", "sig", "se", "skn"]
    assert fields["sr"] == "myhub.azure-devices.net"  # the lower-case resource URI
    assert fields["se"] == str(1_456_970_000 + 3600)
    assert fields["skn"] == POLICY
    expected = base64.b64encode(
        hmac.new(
            base64.b64decode(KEY), f"myhub.azure-devices.net\n{fields['se']}".encode(), "sha256"
        ).digest()
    ).decode()
    assert parse.unquote(fields["sig"]) == expected
    assert "+" not in fields["sig"] and "/" not in fields["sig"]  # URL-encoded
    # The documentation's device-scoped example: sr is the lower-case URL-encoding.
    device = ih.sas_token(hub, now=0, resource="myHub.azure-devices.net/devices/device1")
    assert "sr=myhub.azure-devices.net%2fdevices%2fdevice1&" in device
    assert documented_token_problem(ih.sas_token(hub), HOST, POLICY, KEY) is None


# -- apply, against the stand-in ---------------------------------------------------------
def test_apply_posts_the_manifest_to_the_stand_in_as_documented(
    stand_in: DocumentedHub, transport: ih.Transport
) -> None:
    manifest = a_manifest()
    digest = ih.apply_configuration(the_hub(), DEVICE, manifest, CREDENTIALS, transport)
    assert stand_in.problems == []
    assert digest == im.manifest_digest(manifest)
    [seen] = stand_in.seen
    assert (seen.method, seen.answer) == ("POST", 204)
    path = f"/devices/{DEVICE}/applyConfigurationContent?api-version={DOCUMENTED_API_VERSION}"
    assert seen.raw_path == path
    assert seen.headers["Content-Type"] == "application/json; charset=utf-8"
    assert seen.headers["Accept"] == "application/json"
    assert documented_token_problem(seen.headers["Authorization"], HOST, POLICY, KEY) is None
    sent = json.loads(seen.body)
    assert list(sent) == ["modulesContent"] and im.validate(sent) == []
    # Registry credentials: filled in for the request, by reference in what is kept.
    creds = sent["modulesContent"]["$edgeAgent"]["properties.desired"]["runtime"]["settings"][
        "registryCredentials"
    ]["acr"]
    assert (creds["username"], creds["password"]) == ("acr-user", "acr-password-123")
    assert sent == im.with_credentials(manifest, CREDENTIALS)
    assert "acr-password-123" not in json.dumps(manifest)
    assert sent["modulesContent"]["diabetes"] == {"properties.desired": {"threshold": 0.5}}


def test_a_manifest_the_schema_refuses_or_a_missing_credential_is_not_sent(
    stand_in: DocumentedHub, transport: ih.Transport
) -> None:
    broken = a_manifest()
    del broken["modulesContent"]["$edgeHub"]
    with pytest.raises(ih.HubError, match="the manifest for device line-7 is not valid"):
        ih.apply_configuration(the_hub(), DEVICE, broken, CREDENTIALS, transport)
    with pytest.raises(ih.HubError, match="environment variable ACR_PW is not set"):
        ih.apply_configuration(the_hub(), DEVICE, a_manifest(), {"ACR_USER": "u"}, transport)
    assert stand_in.seen == []


def test_a_key_the_stand_in_refuses_is_a_one_line_401_naming_the_policy_not_the_key(
    stand_in: DocumentedHub, transport: ih.Transport
) -> None:
    stand_in.key = base64.b64encode(b"another key of the policy, rotated").decode()
    hub = the_hub()
    for call in (
        lambda: ih.apply_configuration(hub, DEVICE, a_manifest(), CREDENTIALS, transport),
        lambda: ih.edge_agent_reported(hub, DEVICE, transport),
    ):
        with pytest.raises(ProviderError) as caught:
            call()
        message = str(caught.value)
        assert "401 IotHubUnauthorizedAccess" in message
        assert f"policy {POLICY}" in message and "environment variable IOTHUB_CS" in message
        assert "\n" not in message and KEY[:12] not in message
    assert [s.answer for s in stand_in.seen] == [401, 401]


def test_an_unknown_device_is_a_one_line_404(
    stand_in: DocumentedHub, transport: ih.Transport
) -> None:
    hub = the_hub()
    with pytest.raises(ih.HubError) as caught:
        ih.apply_configuration(hub, "line-8", a_manifest(), CREDENTIALS, transport)
    assert str(caught.value) == (
        f"cannot apply the manifest to device line-8: IoT Hub {HOST} has no device line-8 "
        "(404 DeviceNotFound: Device line-8 not registered); register it as an IoT Edge device "
        "(az iot hub device-identity create --device-id line-8 --edge-enabled)"
    )
    with pytest.raises(ih.HubError, match="has no device line-8 .404 DeviceNotFound"):
        ih.edge_agent_reported(hub, "line-8", transport)
    stand_in.devices[DEVICE].edge = False
    with pytest.raises(ih.HubError, match=r"no \$edgeAgent module twin \(404 ModuleNotFound"):
        ih.edge_agent_reported(hub, DEVICE, transport)
    assert stand_in.problems == []


# -- refresh, against the stand-in -------------------------------------------------------
def test_refresh_reads_the_reported_module_states_from_the_stand_in(
    stand_in: DocumentedHub, transport: ih.Transport
) -> None:
    hub = the_hub()
    fresh = ih.edge_agent_reported(hub, DEVICE, transport)
    assert (fresh.modules, fresh.last_desired_version, fresh.applied) == ({}, None, False)
    assert fresh.status_text == "the edge agent has reported nothing yet"

    ih.apply_configuration(hub, DEVICE, a_manifest(), CREDENTIALS, transport)
    device = stand_in.devices[DEVICE]
    reported = documented_reported()
    reported["lastDesiredVersion"] = device.desired_version
    reported["lastDesiredStatus"] = {"code": 200, "description": ""}
    reported["modules"] = {
        "diabetes": reported_module("running", "x.azurecr.io/diabetes:3"),
        "sensor": reported_module("backoff", "x.azurecr.io/sensor:1", exit_code=1),
    }
    device.reported = reported
    report = ih.edge_agent_reported(hub, DEVICE, transport)
    assert stand_in.problems == []
    get = stand_in.seen[-1]
    assert (get.method, get.answer) == ("GET", 200)
    # $edgeAgent percent-encoded as Microsoft's generated clients do; the path as documented.
    assert get.raw_path == f"/twins/{DEVICE}/modules/%24edgeAgent?api-version=2021-04-12"
    assert documented_token_problem(get.headers["Authorization"], HOST, POLICY, KEY) is None
    assert report.device_id == DEVICE
    assert report.desired_version == report.last_desired_version == device.desired_version
    assert report.applied and report.status_text == "200: applied"
    assert set(report.modules) == {"diabetes", "sensor"}
    diabetes, sensor = report.modules["diabetes"], report.modules["sensor"]
    assert (diabetes.runtime_status, diabetes.image) == ("running", "x.azurecr.io/diabetes:3")
    assert diabetes.service_status is ServiceStatus.HEALTHY
    assert (sensor.runtime_status, sensor.exit_code, sensor.restart_count) == ("backoff", 1, 2)
    assert sensor.service_status is ServiceStatus.TRANSITIONING
    assert set(report.system_modules) == {"edgeAgent", "edgeHub"}

    # A new manifest the agent has not processed yet: not applied.
    ih.apply_configuration(hub, DEVICE, a_manifest(), CREDENTIALS, transport)
    again = ih.edge_agent_reported(hub, DEVICE, transport)
    assert again.desired_version == device.desired_version != again.last_desired_version
    assert not again.applied


# -- the documented twin, parsed -----------------------------------------------------------
def test_the_documented_edge_agent_twin_reads_as_documented() -> None:
    twin = documented_twin_top("Windows109")
    twin["properties"] = {"desired": {"$version": 11}, "reported": documented_reported()}
    report = ih.parse_edge_agent_twin(twin)
    assert report.device_id == "Windows109"
    assert (report.desired_version, report.last_desired_version) == (11, 11)
    assert report.last_desired_code == 406 and not report.applied
    assert report.status_text == (
        "406: the edge agent is not connected to the hub (Agent is not running)"
    )
    m1 = report.modules["m1"]
    assert m1 == ih.ModuleReport(
        name="m1",
        runtime_status="unknown",
        status_description="running",
        exit_code=0,
        image="mcr.microsoft.com/azureiotedge-simulated-temperature-sensor:1.1",
        desired_status="running",
        restart_count=0,
        last_start_time="2021-06-12T00:27:43.9269859",
        last_exit_time="2021-06-12T00:26:29.1405344",
    )
    assert report.system_modules["edgeHub"].image == "mcr.microsoft.com/azureiotedge-hub:1.1"
    assert report.system_modules["edgeAgent"].runtime_status == "unknown"


@pytest.mark.parametrize(
    ("reported", "status", "service"),
    [
        ("running", "running", ServiceStatus.HEALTHY),
        ("stopped", "stopped", ServiceStatus.UNHEALTHY),
        ("failed", "failed", ServiceStatus.FAILED),
        ("backoff", "backoff", ServiceStatus.TRANSITIONING),
        ("unhealthy", "unhealthy", ServiceStatus.UNHEALTHY),
        ("unknown", "unknown", ServiceStatus.TRANSITIONING),
        ("Running", "running", ServiceStatus.HEALTHY),
        ("dead", "unknown", ServiceStatus.TRANSITIONING),
    ],
)
def test_each_documented_runtime_status_maps_to_a_service_state(
    reported: str, status: str, service: ServiceStatus
) -> None:
    twin = {"properties": {"reported": {"modules": {"m": {"runtimeStatus": reported}}}}}
    module = ih.parse_edge_agent_twin(twin, "d").modules["m"]
    assert (module.runtime_status, module.service_status) == (status, service)


def test_each_error_body_shape_gives_its_code_and_message() -> None:
    def detail(body: Any, headers: dict[str, str] | None = None) -> tuple[str, str]:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        return ih.hub_error_detail(ih.Response(404, headers or {}, raw))

    assert detail(old_style_error("DeviceNotFound", "Device d not registered")) == (
        "DeviceNotFound",
        "Device d not registered",
    )
    assert detail(new_style_error(404010, "Module m not found")) == (
        "ModuleNotFound",
        "Module m not found",
    )
    nested = {"Message": json.dumps(new_style_error(404103, "not\nonline")), "ExceptionMessage": ""}
    assert detail(nested) == ("404103", "not online")
    assert detail(b"<html>gateway</html>", {"iothub-errorcode": "ServerError"}) == (
        "ServerError",
        "<html>gateway</html>",
    )


# -- a hub that cannot be reached ---------------------------------------------------------
def test_an_unreachable_hub_is_one_line() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    transport = ih.Transport(f"https://127.0.0.1:{port}", timeout=5)
    with pytest.raises(ih.HubError) as caught:
        ih.edge_agent_reported(the_hub(), DEVICE, transport)
    assert str(caught.value) == (
        f"cannot read the $edgeAgent twin of device {DEVICE}: IoT Hub {HOST} is unreachable "
        "(Connection refused)"
    )


def test_a_certificate_not_trusted_is_one_line(stand_in: DocumentedHub) -> None:
    transport = ih.Transport(f"https://127.0.0.1:{stand_in.port}", timeout=5)  # system CAs
    with pytest.raises(ih.HubError, match=f"TLS with {HOST} failed") as caught:
        ih.edge_agent_reported(the_hub(), DEVICE, transport)
    assert "\n" not in str(caught.value)
    assert stand_in.seen == []


def test_a_hub_that_does_not_answer_times_out_in_one_line() -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)  # accepts the connection in the kernel, never answers
        transport = ih.Transport(f"https://127.0.0.1:{silent.getsockname()[1]}", timeout=0.5)
        started = time.monotonic()
        with pytest.raises(ih.HubError, match=f"IoT Hub {HOST} did not answer within 0.5 s"):
            ih.apply_configuration(the_hub(), DEVICE, a_manifest(), CREDENTIALS, transport)
        assert time.monotonic() - started < 5
