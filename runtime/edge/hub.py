"""``python -m modelform.runtime.edge.hub --manifest FILE --state-dir DIR [--host H] [--port P]``
(also ``[--device D] [--hostname H] [--gateway-hostname G] [--pace N]``).

Runs the local edge hub until SIGTERM/SIGINT (exit 0). SIGHUP (or a
change of the manifest file) reloads the manifest. Exit status 1: it
cannot listen or make its certificates; 2: bad options or a manifest it
cannot run. Errors are one line on stderr; the log is JSON lines on
stderr too. ``azure-iot-device`` clients connect to port 8883 (the SDK
has no port setting), so that is the default.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence
from importlib.util import find_spec
from pathlib import Path

from modelform.runtime import logs
from modelform.runtime.edge import certs
from modelform.runtime.edge import identities as ids
from modelform.runtime.edge.manifest import ManifestError
from modelform.runtime.edge.manifest import load as load_manifest
from modelform.runtime.listen import bind_listeners

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_BAD_INPUT = 2
DEFAULT_PORT = 8883
#: Flow control (router module docstring): messages held for a module before producers wait.
DEFAULT_PACE = 2


def build_parser(prog: str = "python -m modelform.runtime.edge.hub") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="The local IoT Edge hub: a TLS MQTT broker for azure-iot-device modules, "
        "with SAS authentication, the deployment manifest's routes, module twins and an "
        "upstream store.",
    )
    parser.add_argument("--manifest", required=True, help="deployment manifest (JSON)")
    parser.add_argument(
        "--state-dir",
        required=True,
        help="folder for ca.pem, modules.json, twins, held messages, upstream.jsonl, status.json",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help="MQTT over TLS port (the SDK uses 8883)"
    )
    parser.add_argument(
        "--device", default=None, help="device id (default: the state folder's, else 'edge')"
    )
    parser.add_argument(
        "--hostname",
        default=None,
        help=f"IoT Hub host name modules sign tokens for (default {ids.DEFAULT_HOSTNAME})",
    )
    parser.add_argument(
        "--pace",
        type=int,
        default=DEFAULT_PACE,
        help="flow control: a producer's PUBACK waits while a module it feeds has this many "
        "messages held without a result (default %(default)s; 0: never)",
    )
    parser.add_argument(
        "--gateway-hostname",
        default=None,
        help="GatewayHostName in connection strings: the name modules reach the hub by "
        "(default: --host)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not 0 <= args.port <= 65535:
        print(f"error: port must be between 0 and 65535, got {args.port}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.pace < 0:
        print(f"error: --pace must be 0 (none) or more, got {args.pace}", file=sys.stderr)
        return EXIT_BAD_INPUT
    log = logs.JsonLog(fd=2, role="edge-hub")
    # amqtt's, asyncio's and the rest's warnings as JSON lines too (amqtt's own chatter is
    # turned down to errors: the hub logs connections and refusals itself).
    root = logging.getLogger()
    root.addHandler(logs.ForwardHandler(log))
    root.setLevel(logging.WARNING)
    manifest = Path(args.manifest).expanduser().absolute()
    state_dir = Path(args.state_dir).expanduser().absolute()
    try:
        deployment = load_manifest(manifest)
    except ManifestError as error:
        log.error("manifest_invalid", error=str(error))
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    gateway = args.gateway_hostname or args.host
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
        identities = ids.ensure(
            state_dir,
            deployment.modules,
            device=args.device,
            gateway=gateway,
            hostname=args.hostname,
        )
        certs.ensure(state_dir, certs.names_for(args.host, [gateway]))
    except (OSError, ids.IdentityError, certs.CertError) as error:
        log.error("state_dir_failed", error=str(error))
        print(f"error: {error}", file=sys.stderr)
        return EXIT_ERROR
    try:
        sock = bind_listeners(args.host, args.port, 1)[0]
    except OSError as error:
        reason = error.strerror or str(error)
        log.error("bind_failed", host=args.host, port=args.port, error=reason)
        print(f"error: cannot listen on {args.host}:{args.port}: {reason}", file=sys.stderr)
        return EXIT_ERROR
    port = sock.getsockname()[1]

    async def serve() -> None:
        from modelform.runtime.edge.broker import EdgeBroker, quiet_amqtt
        from modelform.runtime.edge.router import Router

        quiet_amqtt()
        router = Router(
            manifest,
            state_dir,
            deployment,
            identities,
            log,
            host=args.host,
            port=port,
            pace=args.pace,
        )
        router.open()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGINT, stop.set)
        loop.add_signal_handler(signal.SIGHUP, router.reload)
        broker = EdgeBroker(router, sock, certs.server_context(state_dir))
        await router.run(broker, stop)

    try:
        if find_spec("uvloop"):
            import uvloop

            uvloop.run(serve())
        else:
            asyncio.run(serve())
    except OSError as error:
        log.error("serve_failed", error=str(error))
        print(f"error: {error}", file=sys.stderr)
        return EXIT_ERROR
    finally:
        sock.close()
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
