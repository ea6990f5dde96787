"""The local IoT Edge hub: modules on ``azure-iot-device`` talking through the deployment's routes.

One process (``python -m modelform.runtime.edge.hub``, see ``hub``) plays
the edge hub of one device for development and tests: a TLS MQTT broker
(amqtt, embedded; a throwaway CA in the state folder) that authenticates
modules by SAS token, forwards their messages along the manifest's
``$edgeHub`` routes, keeps ``$upstream`` messages in ``DIR/upstream.jsonl``,
serves module twins, and holds every message it gave a module until that
module's result comes back, so each reaches upstream exactly once even when
a module is killed mid-stream.

Pieces: ``routes`` and ``condition`` (route syntax), ``sas`` (tokens),
``identities`` (``DIR/modules.json``, connection strings), ``certs``,
``manifest`` (what the hub reads of it), ``messages`` (MQTT topics and
properties), ``store`` (held deliveries, upstream), ``twins``, ``broker``
(the amqtt subclasses), ``router`` (the hub itself).

What a launcher (the provider) uses::

    connection_string(state_dir, module) -> "HostName=…;DeviceId=…;ModuleId=…;
                                             SharedAccessKey=…;GatewayHostName=…"
    ensure_identities(state_dir, modules, device=…, gateway=…) -> Identities
    DIR/ca.pem                  # EdgeModuleCACertificateFile
    DIR/status.json             # state, pid, modules (connected, held, …), counts
    DIR/upstream.jsonl          # one JSON object per upstream message

The package imports only the standard library and orjson at import time.
"""

from __future__ import annotations

from modelform.runtime.edge.identities import Identities, IdentityError, connection_string
from modelform.runtime.edge.identities import ensure as ensure_identities

__all__ = ["Identities", "IdentityError", "connection_string", "ensure_identities"]
