"""Module identities of the local edge hub: ``DIR/modules.json``.

::

    {"hostname": "<IoT Hub host name modules sign for>", "device": "line-7",
     "gateway": "127.0.0.1", "modules": {"sensor": {"key": "<base64, 32 bytes>"}, ...}}

A key is made the first time a module is named and kept after that, so a
module started with a connection string stays valid across hub restarts
and manifest reloads; a module dropped from the manifest keeps its key in
the file but the hub refuses it. The file is private to its user (0600).

``connection_string(state_dir, module)`` is what a module is given as
``EdgeHubConnectionString`` (the edge agent's variable), with
``EdgeModuleCACertificateFile`` = ``DIR/ca.pem``.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from modelform.runtime.edge.files import read_json, write_json

FILE = "modules.json"
DEFAULT_HOSTNAME = "modelform-edgehub.local"


class IdentityError(ValueError):
    """No identity for a module (or an unreadable identities file); one line."""


@dataclass
class Identities:
    hostname: str
    device: str
    gateway: str
    keys: dict[str, str] = field(default_factory=dict)

    def connection_string(self, module: str) -> str:
        key = self.keys.get(module)
        if key is None:
            raise IdentityError(f"no identity for module {module!r} on device {self.device!r}")
        return (
            f"HostName={self.hostname};DeviceId={self.device};ModuleId={module};"
            f"SharedAccessKey={key};GatewayHostName={self.gateway}"
        )


def load(state_dir: Path) -> Identities | None:
    path = state_dir / FILE
    try:
        document = read_json(path)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        raise IdentityError(f"cannot read {path}: {error}") from None
    try:
        return Identities(
            hostname=str(document["hostname"]),
            device=str(document["device"]),
            gateway=str(document["gateway"]),
            keys={name: str(entry["key"]) for name, entry in document["modules"].items()},
        )
    except (KeyError, TypeError, AttributeError) as error:
        raise IdentityError(f"cannot read {path}: missing {error}") from None


def ensure(
    state_dir: Path,
    modules: Iterable[str],
    *,
    device: str | None = None,
    gateway: str = "127.0.0.1",
    hostname: str | None = None,
) -> Identities:
    """Load ``DIR/modules.json`` and add a key for every module that lacks one.

    ``device``/``hostname`` None keep what the file has (else the defaults);
    the file is rewritten only when something changed.
    """
    current = load(state_dir)
    identities = current or Identities(
        hostname=hostname or DEFAULT_HOSTNAME, device=device or "edge", gateway=gateway
    )
    changed = current is None
    if device is not None and identities.device != device:
        identities.device, changed = device, True
    if hostname is not None and identities.hostname != hostname:
        identities.hostname, changed = hostname, True
    if identities.gateway != gateway:
        identities.gateway, changed = gateway, True
    for module in modules:
        if module not in identities.keys:
            identities.keys[module] = base64.b64encode(os.urandom(32)).decode()
            changed = True
    if changed:
        state_dir.mkdir(parents=True, exist_ok=True)
        write_json(
            state_dir / FILE,
            {
                "hostname": identities.hostname,
                "device": identities.device,
                "gateway": identities.gateway,
                "modules": {name: {"key": key} for name, key in identities.keys.items()},
            },
            mode=0o600,
        )
    return identities


def connection_string(state_dir: Path, module: str) -> str:
    """``HostName=…;DeviceId=…;ModuleId=…;SharedAccessKey=…;GatewayHostName=…`` for a module."""
    identities = load(state_dir)
    if identities is None:
        raise IdentityError(f"no {FILE} in {state_dir}: the edge hub has not run there")
    return identities.connection_string(module)
