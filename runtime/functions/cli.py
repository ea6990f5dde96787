"""``python -m modelform.runtime.functions APP_DIR --host H --port P [...]``

Exit status: 0 after SIGTERM/SIGINT, 1 on an error while running (port in
use), 2 on bad options, 3 when the app cannot be loaded (import error,
unsupported binding, missing setting). Errors are one line on stderr;
the log (JSON lines) goes to stderr too.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from importlib.util import find_spec
from pathlib import Path

from modelform.runtime import logs
from modelform.runtime.functions.host import Host, HostConfig
from modelform.runtime.functions.loader import AppLoadError
from modelform.runtime.functions.settings import SettingsError
from modelform.runtime.listen import bind_listeners

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_BAD_OPTIONS = 2
EXIT_LOAD_FAILED = 3


def build_parser(prog: str = "python -m modelform.runtime.functions") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Run an Azure Functions Python v2 app locally: HTTP, blob (Azure Blob or "
        "S3), storage queue and service bus triggers.",
    )
    parser.add_argument("app_dir", metavar="APP_DIR", help="folder holding function_app.py")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=7071, help="HTTP port (0: any free port)")
    parser.add_argument(
        "--host-id",
        default=None,
        help="id the blob receipts are kept under (default: AzureFunctionsWebHost__hostid, "
        "else the app folder's name)",
    )
    parser.add_argument(
        "--poll-seconds",
        type=float,
        default=0.5,
        help="how often blob containers are listed and empty queues polled (default 0.5)",
    )
    parser.add_argument(
        "--lease-seconds",
        type=float,
        default=30.0,
        help="a claim (blob receipt, hidden queue message) not renewed for this long belongs "
        "to a host that is gone and is taken over (default 30)",
    )
    parser.add_argument(
        "--grace-seconds",
        type=float,
        default=10.0,
        help="at a stop, how long runs in progress may take to finish (default 10)",
    )
    return parser


def config_from_args(args: argparse.Namespace) -> HostConfig:
    if not 0 <= args.port <= 65535:
        raise ValueError(f"port must be between 0 and 65535, got {args.port}")
    if not args.poll_seconds > 0:
        raise ValueError("--poll-seconds must be positive")
    if not args.lease_seconds >= 2 * args.poll_seconds or args.lease_seconds < 1:
        raise ValueError("--lease-seconds must be at least 1 and at least twice --poll-seconds")
    if args.grace_seconds < 0:
        raise ValueError("--grace-seconds must not be negative")
    return HostConfig(
        app_dir=Path(args.app_dir).expanduser().absolute(),
        host=args.host,
        port=args.port,
        host_id=args.host_id,
        poll_seconds=args.poll_seconds,
        lease_seconds=args.lease_seconds,
        grace_seconds=args.grace_seconds,
    )


def main(argv: Sequence[str] | None = None) -> int:
    try:
        config = config_from_args(build_parser().parse_args(argv))
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_OPTIONS
    log = logs.JsonLog(fd=2, role="functions-host")
    host = Host(config, log)
    try:
        host.load()
    except (AppLoadError, SettingsError) as error:
        detail = getattr(error, "detail", "")
        log.error("load_failed", error=str(error), **({"traceback": detail} if detail else {}))
        print(f"error: {error}", file=sys.stderr)
        return EXIT_LOAD_FAILED
    try:
        sock = bind_listeners(config.host, config.port, 1)[0]
    except OSError as error:
        reason = error.strerror or str(error)
        log.error("bind_failed", host=config.host, port=config.port, error=reason)
        print(f"error: cannot listen on {config.host}:{config.port}: {reason}", file=sys.stderr)
        return EXIT_ERROR
    try:
        if find_spec("uvloop"):
            import uvloop

            uvloop.run(host.serve(sock))
        else:
            asyncio.run(host.serve(sock))
    except OSError as error:
        log.error("serve_failed", error=str(error))
        print(f"error: {error}", file=sys.stderr)
        return EXIT_ERROR
    finally:
        sock.close()
    return EXIT_OK
