"""Azurite, Microsoft's Azure Storage emulator (blob, queue, table), installed with npm.

It serves the one well-known development account, devstoreaccount1, with its
published key: the connection string is public, not a secret, and the same on
every machine (as `UseDevelopmentStorage=true` is).
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import hmac
import json
import os
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from tenv_common import Layout, PartError, output, run, say
from tenv_server import Server

ACCOUNT = "devstoreaccount1"
# Azurite's documented default key for devstoreaccount1 (also the Azure storage
# emulator's): public, so it is written into the env files as it is.
ACCOUNT_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
# A REST version every Azurite 3.x accepts (the probe's own requests).
PROBE_API_VERSION = "2021-08-06"
STAMP = ".modelform-version"


def node_tools() -> tuple[str, str]:
    """Paths of node and npm; a one-line error when Node.js is missing or too old."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        raise PartError("azurite needs Node.js 18 or newer and npm (apt-get install nodejs npm)")
    version = output([node, "--version"]).strip()
    if int(version.lstrip("v").split(".")[0]) < 18:
        raise PartError(f"azurite needs Node.js 18 or newer; {node} is {version}")
    return node, npm


class AzuritePart(Server):
    name = "azurite"

    def __init__(self, layout: Layout, versions: dict[str, str]) -> None:
        super().__init__(layout, versions)
        self.version = versions["AZURITE_VERSION"]
        self.blob_port = int(versions["AZURITE_BLOB_PORT"])
        self.queue_port = int(versions["AZURITE_QUEUE_PORT"])
        self.table_port = int(versions["AZURITE_TABLE_PORT"])

    @property
    def install_dir(self) -> Path:
        return self.layout.root / "node" / "azurite"

    def ports(self) -> list[int]:
        return [self.blob_port, self.queue_port, self.table_port]

    def describe(self) -> str:
        return (
            f"blob 127.0.0.1:{self.blob_port}, queue 127.0.0.1:{self.queue_port}, "
            f"table 127.0.0.1:{self.table_port} (azurite {self.version})"
        )

    # -- install -----------------------------------------------------------------------------

    def _entry(self, root: Path) -> Path:
        """The `azurite` command's script, as the package itself declares it."""
        package = json.loads((root / "node_modules" / "azurite" / "package.json").read_text())
        return root / "node_modules" / "azurite" / package["bin"]["azurite"]

    def built(self) -> bool:
        stamp = self.install_dir / STAMP
        try:
            return (
                stamp.read_text().strip() == self.version
                and self._entry(self.install_dir).is_file()
            )
        except (OSError, ValueError, KeyError):
            return False

    def build(self) -> None:
        """`npm install azurite@VERSION` into a fresh folder, swapped in when complete."""
        _, npm = node_tools()
        started = time.monotonic()
        say(f"  installing azurite {self.version} with npm (cached afterwards)")
        partial = self.install_dir.with_name(".azurite.partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        manifest = {"name": "modelform-testenv-azurite", "private": True}
        (partial / "package.json").write_text(json.dumps(manifest) + "\n")
        env = dict(
            os.environ,
            npm_config_cache=str(self.layout.root / "node" / "npm-cache"),
            npm_config_update_notifier="false",
            npm_config_fund="false",
            npm_config_audit="false",
        )
        package = f"azurite@{self.version}"
        run(
            [npm, "install", "--save-exact", "--omit=dev", "--no-progress", package],
            self.layout.logs / "build-azurite.log",
            env=env,
            cwd=partial,
            what=f"npm install {package}",
        )
        if not self._entry(partial).is_file():
            raise PartError(f"npm install {package} left no azurite command")
        (partial / STAMP).write_text(self.version + "\n")
        shutil.rmtree(self.install_dir, ignore_errors=True)
        partial.rename(self.install_dir)
        say(f"  azurite {self.version} installed in {time.monotonic() - started:.0f} s")

    # -- run ---------------------------------------------------------------------------------

    def up(self, build: bool) -> str:
        # A running Azurite of another version than the pin (the pin changed) is stopped
        # before its folder is replaced, so `up` never leaves the old one serving.
        if self.daemon.pid() is not None and not self.built():
            self.daemon.stop(self.stop_timeout)
        return super().up(build)

    def prepare(self) -> None:
        self.fresh_data_dir()

    def argv(self) -> list[str]:
        node, _ = node_tools()
        return [
            node, str(self._entry(self.install_dir)),
            "--blobHost", "127.0.0.1", "--blobPort", str(self.blob_port),
            "--queueHost", "127.0.0.1", "--queuePort", str(self.queue_port),
            "--tableHost", "127.0.0.1", "--tablePort", str(self.table_port),
            "--location", str(self.data_dir),
            "--disableTelemetry",
            # The Python SDKs send a newer x-ms-version than 3.35 knows (see docs/testenv.md).
            "--skipApiVersionCheck",
        ]  # fmt: skip

    def healthy(self) -> bool:
        """A signed request to each service: list containers, list queues, query tables."""
        blob, queue, table = self.endpoints()
        return (
            _signed_get(f"{blob}/?comp=list", table=False) == 200
            and _signed_get(f"{queue}/?comp=list", table=False) == 200
            and _signed_get(f"{table}/Tables", table=True) == 200
        )

    def endpoints(self) -> tuple[str, str, str]:
        return (
            f"http://127.0.0.1:{self.blob_port}/{ACCOUNT}",
            f"http://127.0.0.1:{self.queue_port}/{ACCOUNT}",
            f"http://127.0.0.1:{self.table_port}/{ACCOUNT}",
        )

    def env(self) -> dict[str, str]:
        blob, queue, table = self.endpoints()
        connection = (
            f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
            f"BlobEndpoint={blob};QueueEndpoint={queue};TableEndpoint={table};"
        )
        return {
            "connection_string": connection,
            "account_name": ACCOUNT,
            "account_key": ACCOUNT_KEY,
            "blob_endpoint": blob,
            "queue_endpoint": queue,
            "table_endpoint": table,
            "version": self.version,
        }


def _signed_get(url: str, table: bool, timeout: float = 2.0) -> int:
    """GET url with Shared Key (blob, queue) or Shared Key Lite (table) auth; the status."""
    parts = urllib.parse.urlsplit(url)
    date = email.utils.formatdate(usegmt=True)
    # Path-style (emulator) URLs: the resource is /account + the path, which itself
    # starts with the account (/devstoreaccount1/devstoreaccount1/...).
    resource = f"/{ACCOUNT}{parts.path}"
    headers = {"x-ms-date": date, "x-ms-version": PROBE_API_VERSION}
    if table:
        headers["Accept"] = "application/json;odata=nometadata"
        to_sign = f"{date}\n{resource}"
        scheme = "SharedKeyLite"
    else:
        query = sorted(urllib.parse.parse_qsl(parts.query, keep_blank_values=True))
        canon_headers = "".join(f"{k}:{v}\n" for k, v in sorted(headers.items()))
        canon_query = "".join(f"\n{k.lower()}:{v}" for k, v in query)
        to_sign = "GET\n" + "\n" * 11 + canon_headers + resource + canon_query
        scheme = "SharedKey"
    digest = hmac.new(base64.b64decode(ACCOUNT_KEY), to_sign.encode(), hashlib.sha256).digest()
    headers["Authorization"] = f"{scheme} {ACCOUNT}:{base64.b64encode(digest).decode()}"
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
