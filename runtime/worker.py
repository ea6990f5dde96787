"""One worker process: loads the script, runs ``init()``, serves the shared socket.

A worker is forked by the master with its listening socket already open.
It imports the entry script and runs ``init()`` on its main thread (as
Azure ML does; the same thread later calls ``run()``) while a helper
thread answers probes and 503s (``boot``). On success the app starts
scoring and the worker tells the master through the ready pipe. On
failure the traceback is logged and the worker exits with
:data:`EXIT_INIT_FAILED`, which makes the master stop the whole server.

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
import time
import traceback
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from modelform.runtime import logs
from modelform.runtime.app import ScoringApp
from modelform.runtime.boot import BootServer
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
    log.use_loop(_flush_later)

    booting = BootServer(_uvicorn_config(app, options, boot=True), sock)
    booting.start()
    try:
        started = _load_and_init(options, app, log, early_stop)
    finally:
        booting.stop()
        log.flush()  # lines the helper buffered for its own loop
    if started is None:  # stopped while init() ran
        return 0
    log.info("worker_ready", init_ms=round(started * 1000, 1))
    try:
        os.write(ready_fd, READY_MESSAGE.pack(index, 1))
    except OSError:
        pass

    import uvicorn

    server = uvicorn.Server(_uvicorn_config(app, options, boot=False))
    early_stop.attach(server)
    server.run(sockets=[sock])
    log.flush()
    return 0 if server.started else 1


def _uvicorn_config(app: ScoringApp, options: ServeOptions, *, boot: bool) -> Any:
    """uvicorn with httptools and uvloop when installed (the helper thread uses asyncio's loop)."""
    import uvicorn

    return uvicorn.Config(
        app,
        loop="asyncio" if boot or not find_spec("uvloop") else "uvloop",
        http="httptools" if find_spec("httptools") else "h11",
        ws="none",
        lifespan="off",
        interface="asgi3",
        access_log=False,
        log_config=None,
        server_header=False,
        date_header=True,
        timeout_keep_alive=5,
        timeout_graceful_shutdown=1 if boot else options.graceful_timeout,  # type: ignore[arg-type]
    )


def _flush_later(callback: Any) -> None:
    import asyncio

    asyncio.get_running_loop().call_later(_LOG_FLUSH_S, callback)


def _load_and_init(
    options: ServeOptions, app: ScoringApp, log: logs.JsonLog, early_stop: _EarlyStop
) -> float | None:
    """Import the script and run ``init()`` on this (main) thread; attach it to the app.

    Returns the seconds it took, or None if a stop signal came meanwhile.
    Any failure is logged and ends the process with EXIT_INIT_FAILED.
    """
    started = time.perf_counter()
    early_stop.interrupt_init = True
    try:
        script = load_entry_script(options.entry_script)
        log.info("script_loaded", script=str(options.entry_script), mode=script.mode.value)
        script.init()
        swagger = build_swagger(script, _app_roots(options))
    except _StopRequested:
        log.info("stopped_during_init")
        return None
    except BaseException as error:  # noqa: BLE001 - any failure here is fatal and reported
        if early_stop.requested:
            return None
        text = traceback.format_exc()
        log.error(
            "init_failed",
            error=f"{type(error).__name__}: {error}",
            traceback=text,
            model_dir=_model_dir_listing(options.model_dir),
        )
        logs.print_traceback(text)
        log.flush()
        os._exit(EXIT_INIT_FAILED)
    finally:
        early_stop.interrupt_init = False
    app.attach(script, swagger)
    return time.perf_counter() - started


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


class _StopRequested(BaseException):
    """A stop signal arrived while the script was importing or in init()."""


class _EarlyStop:
    """Handles a stop signal before uvicorn has taken over the handlers.

    While ``init()`` runs (``interrupt_init``) it interrupts it; before the
    main server runs it remembers the request; afterwards uvicorn's own
    handlers are in place.
    """

    def __init__(self) -> None:
        self.requested = False
        self.interrupt_init = False
        self._server: Any = None

    def attach(self, server: Any) -> None:
        self._server = server
        if self.requested:
            server.should_exit = True

    def handle(self, signum: int, frame: Any) -> None:
        self.requested = True
        if self._server is not None:
            self._server.should_exit = True
        elif self.interrupt_init:
            self.interrupt_init = False
            raise _StopRequested()
