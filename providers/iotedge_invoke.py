"""``modelform invoke SERVICE`` on the local edge runtime: one message through
the real path — ``azure-iot-device`` → the edge hub → the module's input →
``run()`` → the module's output → its routes → ``$upstream``.

The local hub runs the deployment manifest plus one module of its own,
:data:`INVOKE_MODULE` (never started: it is the identity ``invoke`` connects
with), and one route per service module, ``FROM
/messages/modules/modelformInvoke/outputs/<module> INTO
BrokeredEndpoint("/modules/<module>/inputs/<its first input>")``. The
manifest a device gets (``modelform package``, the IoT Hub) has neither.
``invoke`` sends the body with a fresh correlation id on the output named
after the module and waits for the record of that correlation id in the
hub's upstream store: the module's result (exit 0) or, from its error
output, the failure (reported as status 500). A module whose results are
routed elsewhere than ``$upstream`` gives no answer: the wait ends after
:data:`WAIT_S` with a one-line error naming the routes.
"""

from __future__ import annotations

import copy
import json
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from modelform.plugin import Context, ProviderError
from modelform.providers import iotedge_local as il

INVOKE_MODULE = "modelformInvoke"
WAIT_S = 60.0


def local_manifest(manifest: Mapping[str, Any], inputs: Mapping[str, str]) -> dict[str, Any]:
    """The manifest the local hub runs: ``manifest`` plus the invoke module
    and a route from it to ``inputs`` (module → its first input)."""
    out = copy.deepcopy(dict(manifest))
    content = out["modulesContent"]
    modules = content["$edgeAgent"]["properties.desired"]["modules"]
    modules[INVOKE_MODULE] = {
        "settings": {"image": "modelform/invoke:local", "createOptions": "{}"},
        "status": "stopped",
        "restartPolicy": "never",
        "type": "docker",
        "version": "1.0",
    }
    routes = content["$edgeHub"]["properties.desired"]["routes"]
    for module, first in sorted(inputs.items()):
        routes[f"{INVOKE_MODULE}To{module}"] = (
            f"FROM /messages/modules/{INVOKE_MODULE}/outputs/{module} "
            f'INTO BrokeredEndpoint("/modules/{module}/inputs/{first}")'
        )
    return out


def _records_after(path: Path, offset: int) -> tuple[list[dict[str, Any]], int]:
    try:
        with path.open("rb") as f:
            f.seek(offset)
            data = f.read()
    except OSError:
        return [], offset
    end = data.rfind(b"\n") + 1
    out = []
    for line in data[:end].splitlines():
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        if isinstance(doc, dict):
            out.append(doc)
    return out, offset + end


def invoke(attributes: Mapping[str, Any], body: bytes, ctx: Context) -> tuple[int, bytes]:
    if attributes.get("mode") != "local":
        raise ProviderError(
            "invoke works on the local edge runtime; a device behind an IoT Hub gets its "
            "messages from its own modules"
        )
    target = str(ctx.target.get("name", ""))
    state_dir = il.hub_state_dir(ctx.work_dir, target)
    module = str(attributes["module"])
    status = il.hub_status(state_dir)
    if status is None or not il.hub_alive({"pid": status.get("pid")}):
        raise ProviderError(f"the local edge hub of target {target} is not running: apply first")
    try:
        from azure.iot.device import IoTHubModuleClient, Message
        from azure.iot.device.exceptions import ClientError

        from modelform.runtime.edge import identities as ids
    except ImportError:
        raise ProviderError(
            "invoke needs azure-iot-device: pip install 'modelform[iotedge]'"
        ) from None
    try:
        conn = ids.connection_string(state_dir, INVOKE_MODULE)
        ca = (state_dir / "ca.pem").read_text()
    except (ids.IdentityError, OSError) as e:
        raise ProviderError(
            f"the local edge hub has no identity for invoke ({e}): apply again"
        ) from None
    upstream = state_dir / "upstream.jsonl"
    offset = upstream.stat().st_size if upstream.exists() else 0
    cid = f"invoke-{uuid.uuid4()}"
    message = Message(body, content_encoding="utf-8", content_type="application/json")
    message.correlation_id = cid
    client = IoTHubModuleClient.create_from_connection_string(
        conn, server_verification_cert=ca, connection_retry=False
    )
    try:
        client.connect()
        client.send_message_to_output(message, module)
    except ClientError as e:
        raise ProviderError(f"cannot send to the local edge hub: {type(e).__name__}: {e}") from None
    finally:
        client.shutdown()
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        records, offset = _records_after(upstream, offset)
        for rec in records:
            if rec.get("correlation_id") == cid:
                failed = rec.get("output") == attributes.get("error_output")
                text = str(rec.get("body", ""))
                return (500 if failed else 200), text.encode()
        ctx.sleep(0.05)
    raise ProviderError(
        f"no result of module {module} reached $upstream within {WAIT_S:.0f} s (its outputs "
        f"must be routed to $upstream for invoke to see them)"
    )
