"""One worker process: loads the script, runs ``init()``, serves the shared socket.

A worker is forked by the master with the listening socket already open.
It starts serving at once (so ``/``, ``/ready`` and ``/metrics`` answer,
and ``/score`` says 503) while a thread imports the entry script and runs
``init()``. On success the app starts scoring and the worker tells the
master through the ready pipe. On failure the traceback is logged and the
worker exits with :data:`EXIT_INIT_FAILED`, which makes the master stop
the whole server.

The HTTP stack is uvicorn with httptools and uvloop (asyncio's own loop
and h11 when those are missing). The worker dies with the master
(``PR_SET_PDEATHSIG`` on Linux), so no worker outlives it.
"""

from __future__ import annotations

import faulthandler
import logging
import os
import signal
import socket
import struct
import sys
import threading
import time
import traceback
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from modelform.runtime import logs
from modelform.runtime.app import ScoringApp
from modelform.runtime.metrics import SharedMetrics
from modelform.runtime.options import ServeOptions
from modelform.runtime.script import load_entry_script
from modelform.runtime.swagger import build_swagger

#: Exit status of a worker whose script failed to load or whose init() raised.
EXIT_INIT_FAILED = 3
READY_MESSAGE = struct.Struct("<HH")  # worker index, 1
#: Signals that stop a worker gracefully; the master blocks them while it forks.
STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}
_MODEL_DIR_LINES = 50
_LOG_FLUSH_S = 0.05  # request log lines reach stdout within this delay (or at 3.5 KB)


def run_worker(
    options: ServeOptions,
    sock: socket.socket,
    index: int,
    ready_fd: int,
    shared: SharedMetrics,
    master_pid: int,
) -> int:
    """Serve until told to stop; return the process exit status."""
    early_stop = _EarlyStop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, early_stop.handle)  # uvicorn replaces these while it serves
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)  # blocked by the master around fork
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    _die_with_master(master_pid)
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # kill -USR1 <pid>: stacks to stderr
    log = logs.JsonLog(worker=index)
    _prepare_process(options, log)
    shared.slot(index).started()
    app = ScoringApp(options, log, shared, index)

    booter = threading.Thread(
        target=_boot, args=(options, app, log, index, ready_fd), name="init", daemon=True
    )
    import uvicorn

    config = uvicorn.Config(
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
        timeout_graceful_shutdown=options.graceful_timeout,  # type: ignore[arg-type]
    )
    server = uvicorn.Server(config)
    early_stop.attach(server)
    log.use_loop(_flush_later)
    booter.start()
    server.run(sockets=[sock])
    log.flush()
    return 0 if server.started else 1


def _flush_later(callback: Any) -> None:
    import asyncio

    asyncio.get_running_loop().call_later(_LOG_FLUSH_S, callback)


def _boot(
    options: ServeOptions, app: ScoringApp, log: logs.JsonLog, index: int, ready_fd: int
) -> None:
    started = time.perf_counter()
    try:
        script = load_entry_script(options.entry_script)
        log.info("script_loaded", script=str(options.entry_script), mode=script.mode.value)
        script.init()
        swagger = build_swagger(script, _app_roots(options))
    except BaseException as error:  # noqa: BLE001 - any failure here is fatal and reported
        text = traceback.format_exc()
        log.error(
            "init_failed",
            error=f"{type(error).__name__}: {error}",
            traceback=text,
            model_dir=_model_dir_listing(options.model_dir),
        )
        logs.print_traceback(text)
        os._exit(EXIT_INIT_FAILED)
    app.attach(script, swagger)
    log.info("worker_ready", init_ms=round((time.perf_counter() - started) * 1000, 1))
    try:
        os.write(ready_fd, READY_MESSAGE.pack(index, 1))
    except OSError:
        pass


def _prepare_process(options: ServeOptions, log: logs.JsonLog) -> None:
    """Environment, import path and logging as an Azure ML script expects them."""
    os.environ["AZUREML_ENTRY_SCRIPT"] = str(options.entry_script)
    if options.model_dir is not None:
        os.environ["AZUREML_MODEL_DIR"] = str(options.model_dir)
    elif "AZUREML_MODEL_DIR" not in os.environ:
        log.warning("no_model_dir", message="AZUREML_MODEL_DIR is not set (use --model-dir)")
    app_root = (
        str(options.app_root) if options.app_root else os.environ.get("AML_APP_ROOT", os.getcwd())
    )
    os.environ["AML_APP_ROOT"] = app_root
    script_dir = str(options.entry_script.parent)
    if script_dir not in sys.path:
        sys.path.insert(0, script_dir)
    extra = [app_root]
    source_dir = os.environ.get("AZUREML_SOURCE_DIRECTORY")
    if source_dir:
        extra.append(os.path.join(app_root, source_dir))
    sys.path.extend(path for path in extra if path not in sys.path)

    root = logging.getLogger()
    root.handlers[:] = [logs.ForwardHandler(log)]
    root.setLevel(logging.INFO)
    logging.getLogger("uvicorn").setLevel(logging.WARNING)
    try:
        sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    except (AttributeError, ValueError):
        pass


def _app_roots(options: ServeOptions) -> list[Path]:
    return [Path(os.environ["AML_APP_ROOT"]), options.entry_script.parent]


def _model_dir_listing(model_dir: Path | None) -> list[str]:
    if model_dir is None or not model_dir.exists():
        return []
    entries: list[str] = []
    for path in sorted(model_dir.rglob("*")):
        entries.append(str(path.relative_to(model_dir)) + ("/" if path.is_dir() else ""))
        if len(entries) >= _MODEL_DIR_LINES:
            entries.append("...")
            break
    return entries


def _die_with_master(master_pid: int) -> None:
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, int(signal.SIGTERM), 0, 0, 0)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if os.getppid() != master_pid:
        os._exit(1)


class _EarlyStop:
    """Remembers a stop signal that arrives before uvicorn has taken over the handlers."""

    def __init__(self) -> None:
        self.requested = False
        self._server: Any = None

    def attach(self, server: Any) -> None:
        self._server = server
        if self.requested:
            server.should_exit = True

    def handle(self, signum: int, frame: Any) -> None:
        self.requested = True
        if self._server is not None:
            self._server.should_exit = True
