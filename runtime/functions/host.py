"""The host: loads the app, serves HTTP, runs the trigger listeners, stops cleanly.

Load order, as the real host: the app settings (``local.settings.json``
under the process environment) go into ``os.environ`` (the function key
is taken out first, so user code never sees it; ``AZUREML_MODEL_DIR``
defaults to the app's ``model/``), then ``function_app.py`` is imported
and its functions read; every binding's settings are checked before
anything listens, so a missing connection is one line at start rather
than a failure at the first blob.

The HTTP server (uvicorn + httptools, uvloop when installed) runs on the
main thread's event loop, which also runs ``async def`` functions; each
trigger listener has its own threads. SIGTERM/SIGINT: the state turns
``Stopping``, listeners stop taking work, runs in progress get
``grace_seconds`` to finish (what is left is released: blob claims end
their lease, queue messages become visible), then the HTTP server
finishes its requests and the process exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import signal
import socket
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path
from typing import Any, Protocol

from modelform.runtime import logs
from modelform.runtime.functions.appdigest import app_digest
from modelform.runtime.functions.blobtrigger import BlobTrigger
from modelform.runtime.functions.httpapp import (
    FunctionsHttpApp,
    Route,
    compile_route,
    route_order,
)
from modelform.runtime.functions.invoke import Counts, Invoker
from modelform.runtime.functions.loader import (
    AppLoadError,
    FunctionSpec,
    import_app,
    read_functions,
)
from modelform.runtime.functions.outputs import Connections, OutputWriter, check_bindings
from modelform.runtime.functions.patterns import PatternError, parse_trigger_path
from modelform.runtime.functions.queuetrigger import QueueTrigger
from modelform.runtime.functions.receipts import Owner
from modelform.runtime.functions.servicebus import ServiceBusTrigger
from modelform.runtime.functions.settings import (
    ENV_FUNCTION_KEY,
    HostOptions,
    SettingsError,
    default_host_id,
    export_settings,
    host_options,
    load_app_settings,
    load_host_json,
    sanitize_host_id,
)
from modelform.runtime.functions.stores import StoreError

VERSION = "modelform-functions/0.1 (azure-functions v2 programming model)"


@dataclass(frozen=True)
class HostConfig:
    app_dir: Path
    host: str = "127.0.0.1"
    port: int = 7071
    host_id: str | None = None
    poll_seconds: float = 0.5
    lease_seconds: float = 30.0
    grace_seconds: float = 10.0


class Listener(Protocol):
    name: str
    healthy: bool
    error: str | None

    def start(self) -> None: ...

    def stop(self, grace_seconds: float) -> None: ...

    def describe(self) -> dict[str, Any]: ...


class Host:
    def __init__(self, config: HostConfig, log: logs.JsonLog) -> None:
        self.config = config
        self.log = log
        self.state = "Starting"
        self.started = time.monotonic()
        self.app_dir = config.app_dir.resolve()
        self.specs: list[FunctionSpec] = []
        self.listeners: list[Listener] = []
        self.routes: list[Route] = []
        self.digest = ""
        self.host_id = ""
        self.key = ""
        self.counts = Counts([])
        self.invoker: Invoker | None = None
        self.connections: Connections | None = None
        self.writer: OutputWriter | None = None
        self.options = HostOptions()

    # ---- loading -------------------------------------------------------------------------

    def load(self) -> None:
        """Read settings, import the app, check every binding (AppLoadError / SettingsError)."""
        if not self.app_dir.is_dir():
            raise AppLoadError(f"app folder not found: {self.config.app_dir}")
        settings = load_app_settings(self.app_dir, os.environ)
        self.key = settings.pop(ENV_FUNCTION_KEY, "")
        os.environ.pop(ENV_FUNCTION_KEY, None)
        model_dir = self.app_dir / "model"
        if not settings.get("AZUREML_MODEL_DIR") and model_dir.is_dir():
            settings["AZUREML_MODEL_DIR"] = str(model_dir)
        export_settings(settings)
        self.options = host_options(load_host_json(self.app_dir))
        self.host_id = (
            sanitize_host_id(self.config.host_id)
            if self.config.host_id
            else default_host_id(self.app_dir, settings)
        )
        self.digest = app_digest(self.app_dir)
        _route_logging(self.log)
        self.specs = read_functions(import_app(self.app_dir))
        for spec in self.specs:
            _resolve_percent_settings(spec, settings)
        self.counts = Counts([spec.name for spec in self.specs])
        self.invoker = Invoker(self.log, self.counts, str(self.app_dir))
        self.connections = Connections(settings)
        writer = OutputWriter(self.connections, self.options)
        self.writer = writer
        owner = Owner.this_process()
        for spec in self.specs:
            captures: set[str] = set()
            if spec.trigger_type == "blobTrigger":
                try:
                    pattern = parse_trigger_path(str(spec.trigger.get("path", "")))
                except PatternError as error:
                    raise AppLoadError(f"function {spec.name}: {error}") from None
                captures = {*pattern.names, "BlobTrigger", "Uri"}
            check_bindings(spec, self.connections, captures)
            try:
                self._add(spec, writer, owner)
            except (SettingsError, StoreError, PatternError) as error:
                raise AppLoadError(f"function {spec.name}: {error}") from None
        self.routes.sort(key=route_order)
        no_key = [r.spec.name for r in self.routes if r.needs_key] if not self.key else []
        self.log.info(
            "loaded",
            app_dir=str(self.app_dir),
            app_digest=self.digest,
            host_id=self.host_id,
            functions=[spec.describe() for spec in self.specs],
        )
        if no_key:
            self.log.warning(
                "no_function_key",
                functions=no_key,
                message=f"{ENV_FUNCTION_KEY} is not set: these functions answer 401 to everyone",
            )

    def _add(self, spec: FunctionSpec, writer: OutputWriter, owner: Owner) -> None:
        assert self.invoker is not None and self.connections is not None
        config = self.config
        kind = spec.trigger_type
        if kind == "httpTrigger":
            self.routes.append(compile_route(spec, self.options.route_prefix))
        elif kind == "blobTrigger":
            self.listeners.append(
                BlobTrigger(
                    spec,
                    self.connections,
                    writer,
                    self.invoker,
                    self.log,
                    host_id=self.host_id,
                    owner=owner,
                    poll_seconds=config.poll_seconds,
                    lease_seconds=config.lease_seconds,
                    parallelism=self.options.blob_parallelism,
                    queue_base64=self.options.queues.base64,
                )
            )
        elif kind == "queueTrigger":
            self.listeners.append(
                QueueTrigger(
                    spec,
                    self.connections,
                    writer,
                    self.invoker,
                    self.log,
                    poll_seconds=config.poll_seconds,
                    lease_seconds=config.lease_seconds,
                    options=self.options.queues,
                )
            )
        elif kind == "serviceBusTrigger":
            self.listeners.append(
                ServiceBusTrigger(
                    spec,
                    self.connections,
                    writer,
                    self.invoker,
                    self.log,
                    poll_seconds=config.poll_seconds,
                    max_concurrent=self.options.servicebus_max_concurrent,
                )
            )

    # ---- what the HTTP side shows --------------------------------------------------------

    def health(self) -> tuple[bool, str]:
        if self.state != "Running":
            return False, f"host is {self.state}"
        failing = [
            f"{item.name}: {item.error or 'starting'}"
            for item in self.listeners
            if not item.healthy
        ]
        return (not failing, "; ".join(failing))

    def status(self) -> dict[str, Any]:
        return {
            "id": self.host_id,
            "state": self.state,
            "version": VERSION,
            "app_digest": self.digest,
            "functions": [spec.name for spec in self.specs],
            "counts": self.counts.snapshot(),
            "triggers": {
                **{route.spec.name: self._http_info(route) for route in self.routes},
                **{item.name: item.describe() for item in self.listeners},
            },
            "processUptime": int((time.monotonic() - self.started) * 1000),
        }

    def _http_info(self, route: Route) -> dict[str, Any]:
        prefix = self.options.route_prefix
        return {
            "kind": "http",
            "route": route.template,
            "url": f"/{prefix}/{route.template}" if prefix else f"/{route.template}",
            "methods": sorted(route.methods) if route.methods else None,
            "auth": "function" if route.needs_key else "anonymous",
            "healthy": True,
        }

    # ---- running -------------------------------------------------------------------------

    async def serve(self, sock: socket.socket) -> None:

        assert self.invoker is not None and self.writer is not None
        loop = asyncio.get_running_loop()
        self.invoker.attach_loop(loop)
        app = FunctionsHttpApp(self.routes, self.invoker, self.writer, self.key, self)
        server = _Server(_uvicorn_config(app, self.config.grace_seconds))
        stop = asyncio.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        serving = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started and not serving.done():
            await asyncio.sleep(0.01)
        if serving.done():
            await serving  # raises what stopped it
            return
        for listener in self.listeners:
            listener.start()
        self.state = "Running"
        self.log.info(
            "listening",
            host=self.config.host,
            port=sock.getsockname()[1],
            routes=[self._http_info(route)["url"] for route in self.routes],
        )
        await stop.wait()
        self.state = "Stopping"
        self.log.info("stopping", grace_seconds=self.config.grace_seconds)
        await asyncio.gather(
            *(
                loop.run_in_executor(None, listener.stop, self.config.grace_seconds)
                for listener in self.listeners
            )
        )
        server.should_exit = True
        await serving
        self.invoker.shutdown()
        if self.connections is not None:
            self.connections.close()
        self.state = "Stopped"
        self.log.info("stopped", counts=self.counts.snapshot())


class _Server:
    """uvicorn's Server without its own signal handling (the host's loop handles signals)."""

    def __new__(cls, config: Any) -> Any:
        import uvicorn

        class Server(uvicorn.Server):
            @contextlib.contextmanager
            def capture_signals(self) -> Iterator[None]:
                yield

        return Server(config)


def _uvicorn_config(app: FunctionsHttpApp, grace_seconds: float) -> Any:
    import uvicorn

    return uvicorn.Config(
        app,
        loop="uvloop" if find_spec("uvloop") else "asyncio",
        http="httptools" if find_spec("httptools") else "h11",
        ws="none",
        lifespan="off",
        interface="asgi3",
        access_log=False,
        log_config=None,
        server_header=False,
        date_header=True,
        timeout_keep_alive=5,
        timeout_graceful_shutdown=max(1, int(grace_seconds)),
    )


def _route_logging(log: logs.JsonLog) -> None:
    """The user's ``logging`` calls become host log lines (as the worker forwards them)."""
    root = logging.getLogger()
    root.handlers[:] = [logs.ForwardHandler(log)]
    root.setLevel(logging.INFO)
    for noisy in ("azure", "botocore", "boto3", "urllib3", "uvicorn", "uamqp", "s3transfer"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    except (AttributeError, ValueError):
        pass


def _resolve_percent_settings(spec: FunctionSpec, settings: dict[str, str]) -> None:
    """``%Name%`` in a binding's names and paths is the app setting Name (as on Azure)."""

    def resolve(text: str) -> str:
        def one(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in settings:
                raise AppLoadError(f"function {spec.name}: %{name}% names no app setting")
            return settings[name]

        return re.sub(r"%([A-Za-z0-9_.:-]+)%", one, text)

    for binding in spec.bindings:
        for key in ("path", "queueName", "topicName", "subscriptionName", "route"):
            value = binding.get(key)
            if isinstance(value, str) and "%" in value:
                binding[key] = resolve(value)
