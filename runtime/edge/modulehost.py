"""One module process: the SDK client, the script, the main thread's loop, the twin, the stop.

:class:`ModuleHost` is what ``python -m modelform.runtime.edge.module``
runs (see ``module`` for the behaviour it promises). Order of start-up:
signals, logging, the SDK client from the edge environment (exit 2 when
unusable), the script and ``init()`` (exit 3), connect (retrying up to
``CONNECT_TIMEOUT_S``; exit 1), subscribe, ``on_twin`` with the twin's
desired properties, the first reported properties, then messages.

Everything that arrives — messages, desired-property changes, the stop
signal — goes through one queue to the main thread, so ``run()`` and
``on_twin`` never overlap and the loop has a single ``get()`` per message.
"""

from __future__ import annotations

import copy
import logging
import os
import queue
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from modelform.runtime import logs
from modelform.runtime.edge.module import (
    ENV_CA_FILE,
    EXIT_BAD_OPTIONS,
    EXIT_ERROR,
    EXIT_INIT_FAILED,
    EXIT_OK,
    ModuleOptions,
)
from modelform.runtime.edge.scoring import JSON_TYPE, Outcome, Scorer, failure
from modelform.runtime.edge.senders import Sender, make_sender, no_delay
from modelform.runtime.edge.twins import apply_patch
from modelform.runtime.options import ENV_APP_ROOT, ENV_ENTRY_SCRIPT, ENV_MODEL_DIR

#: The script's optional twin hook.
HOOK = "on_twin"
#: The reported-properties section the module writes.
REPORTED_KEY = "modelform"
CONNECT_TIMEOUT_S = 60.0
#: On stop: time to score what is queued; then again for the sends, the report, the disconnect.
GRACE_S = 5.0
#: IoT Hub's limit on one message (the SDK refuses larger ones).
MESSAGE_LIMIT = 256 * 1024


@dataclass
class Counts:
    received: int = 0
    processed: int = 0
    failed: int = 0
    ignored: int = 0
    sent: int = 0
    send_failed: int = 0


@dataclass
class _Desired:
    """A desired-properties change from an SDK thread: the full document, or a patch."""

    document: dict[str, Any]
    full: bool


_STOP = object()


class _StopRequested(BaseException):
    """A stop signal arrived while the script was importing or in init()."""


class ModuleHost:
    """Build with the options and a log, then :meth:`run` on the main thread."""

    def __init__(self, options: ModuleOptions, log: logs.JsonLog) -> None:
        self.options = options
        self.log = log
        self.counts = Counts()
        self.work: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.client: Any = None
        #: TCP_NODELAY set on the client's sockets (``senders.no_delay``).
        self.no_delay = False
        self.sender: Sender | None = None
        self.hook: Callable[[dict[str, Any]], Any] | None = None
        self.desired: dict[str, Any] = {}
        self.desired_version: int | None = None
        self.started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        self._inputs = frozenset(options.inputs)
        self._ignored_names: set[str] = set()
        self._message_class: Any = None
        self._stopping = False
        self._signals = 0
        self._in_init = False
        self._last_reported: dict[str, Any] | None = None
        self._reporter: threading.Thread | None = None
        self._reporter_stop = threading.Event()

    # ---- lifecycle -------------------------------------------------------------------------

    def run(self) -> int:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._on_signal)
        options = self.options
        setup_logging(self.log)
        self.log.info(
            "starting",
            script=str(options.entry_script),
            inputs=list(options.inputs),
            output=options.output,
            error_output=options.error_output,
        )
        try:
            self.client = create_client()
        except ValueError as error:
            self.log.error("bad_edge_environment", error=str(error))
            print(f"error: {error}", file=sys.stderr)
            return EXIT_BAD_OPTIONS
        self.no_delay = no_delay(self.client)
        try:
            scorer = self._load_and_init()
        except _StopRequested:
            self.log.info("stopped_during_init")
            return EXIT_OK
        if scorer is None:
            return EXIT_INIT_FAILED
        try:
            if not self._connect():
                return EXIT_OK if self._stopping else EXIT_ERROR
            self.log.info(
                "ready",
                mode=scorer.script.mode.value,
                twin_hook=self.hook is not None,
                sender=type(self.sender).__name__,
                no_delay=self.no_delay,
            )
            self._reporter = threading.Thread(target=self._report_loop, name="report", daemon=True)
            self._reporter.start()
            self._serve(scorer)
        finally:
            self._shutdown(scorer)
        return EXIT_OK

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._signals += 1
        if self._signals > 1:
            os._exit(EXIT_ERROR)
        self._stopping = True
        if self._in_init:
            self._in_init = False
            raise _StopRequested()
        self.work.put(_STOP)  # SimpleQueue.put may be called from a signal handler

    def _load_and_init(self) -> Scorer | None:
        from modelform.runtime.script import load_entry_script

        prepare_process(self.options, self.log)
        started = time.perf_counter()
        self._in_init = True
        try:
            script = load_entry_script(self.options.entry_script)
            self.log.info("script_loaded", script=str(script.path), mode=script.mode.value)
            script.init()
        except _StopRequested:
            raise
        except BaseException as error:  # noqa: BLE001 - any failure here is fatal and reported
            if self._stopping:
                raise _StopRequested() from None
            text = traceback.format_exc()
            self.log.error("init_failed", error=f"{type(error).__name__}: {error}", traceback=text)
            logs.print_traceback(text)
            return None
        finally:
            self._in_init = False
        self.log.info("init_done", init_ms=round((time.perf_counter() - started) * 1000, 1))
        hook = getattr(script.module, HOOK, None)
        driver = getattr(script.module, "driver_module", None)
        if hook is None and driver is not None:
            hook = getattr(driver, HOOK, None)
        self.hook = hook if callable(hook) else None
        return Scorer(script, self.options.timeout)

    def _connect(self) -> bool:
        """Connect, subscribe, apply the twin, report; False when stopped or out of time."""
        from azure.iot.device import Message
        from azure.iot.device.exceptions import ClientError

        self._message_class = Message
        client = self.client
        client.on_connection_state_change = self._on_connection_state
        client.on_background_exception = self._on_background_exception
        deadline = time.monotonic() + CONNECT_TIMEOUT_S
        delay = 0.5
        attempt = 0
        while True:
            attempt += 1
            try:
                # The handler first: a hub that kept this module's session (the SDK connects
                # with clean_session=False) delivers held messages as soon as it accepts the
                # CONNECT, and the SDK files a message that comes before any handler is set in
                # a per-input inbox no handler ever reads (it was lost: seen after a kill -9).
                # Setting it connects and subscribes (the SDK's auto-connect).
                client.on_message_received = self._on_message
                client.connect()
                if self.hook is not None:
                    client.on_twin_desired_properties_patch_received = self._on_patch
                    twin = client.get_twin()
                break
            except ClientError as error:
                reason = f"{type(error).__name__}: {error}"
                if time.monotonic() + delay > deadline:
                    self.log.error("connect_failed", attempts=attempt, error=reason)
                    print(f"error: cannot connect to the edge hub: {reason}", file=sys.stderr)
                    return False
                self.log.warning("connect_retry", attempt=attempt, error=reason, delay_s=delay)
                try:
                    if self.work.get(timeout=delay) is _STOP:
                        return False
                except queue.Empty:
                    pass
                delay = min(delay * 2, 5.0)
        self.log.info("connected", attempts=attempt)
        self.sender = make_sender(client, self.counts, self.log, lambda: self._stopping)
        if self.hook is not None:
            self._apply_desired(twin.get("desired") or {}, full=True)
        self._report()  # the last start-up step: the twin now shows this pid
        return True

    def _shutdown(self, scorer: Scorer) -> None:
        self._stopping = True
        self.log.info("stopping", queued=self.work.qsize())
        deadline = time.monotonic() + GRACE_S
        while time.monotonic() < deadline:
            try:
                item = self.work.get_nowait()
            except queue.Empty:
                break
            if item is not _STOP and type(item) is not _Desired:
                self._handle(scorer, item)
        if self.sender is not None:
            self.sender.close(GRACE_S)
        self._reporter_stop.set()
        if self._reporter is not None:
            self._reporter.join(GRACE_S)
        client = self.client
        if client is not None and client.connected:
            run_bounded(lambda: self._report("stopped"), GRACE_S)
        if client is not None:
            run_bounded(client.shutdown, GRACE_S)
        scorer.close()
        self.log.info("stopped", **asdict(self.counts))

    # ---- the main thread's loop ------------------------------------------------------------

    def _serve(self, scorer: Scorer) -> None:
        get = self.work.get
        handle = self._handle
        while True:
            item = get()
            if item is _STOP:
                return
            if type(item) is _Desired:
                self._apply_desired(item.document, item.full)
            else:
                handle(scorer, item)

    def _handle(self, scorer: Scorer, message: Any) -> None:
        counts = self.counts
        counts.received += 1
        input_name = message.input_name
        if input_name not in self._inputs:
            counts.ignored += 1
            if input_name not in self._ignored_names:
                self._ignored_names.add(input_name)
                self.log.warning("input_ignored", input=input_name, inputs=sorted(self._inputs))
            return
        outcome = scorer.score(message)
        if outcome.ok and len(outcome.body) > MESSAGE_LIMIT:
            outcome = failure(
                f"run() returned {len(outcome.body)} bytes, more than a message holds "
                f"({MESSAGE_LIMIT})",
                "ResultTooLarge",
                input_name,
            )
        correlation_id = message.correlation_id or message.message_id
        if outcome.ok:
            counts.processed += 1
            output = self.options.output
        else:
            counts.failed += 1
            output = self.options.error_output
            self._log_failure(outcome, correlation_id, input_name)
        content_type = outcome.content_type
        result = self._message_class(
            outcome.body,
            content_encoding="utf-8" if is_text(content_type) else None,
            content_type=content_type,
        )
        result.correlation_id = correlation_id
        result.custom_properties = message.custom_properties
        assert self.sender is not None
        self.sender.send(result, output)

    def _log_failure(self, outcome: Outcome, correlation_id: str | None, input_name: str) -> None:
        fields: dict[str, Any] = {
            "correlation_id": correlation_id,
            "input": input_name,
            "error": outcome.error,
        }
        if outcome.traceback:
            fields["traceback"] = outcome.traceback
        self.log.error("run_failed", **fields)

    def _apply_desired(self, document: dict[str, Any], full: bool) -> None:
        version = document.get("$version")
        if not isinstance(version, int):
            version = None
        if version is not None and self.desired_version is not None:
            if version <= self.desired_version:
                return  # already applied (the SDK passes the twin on after a reconnect)
        self.desired = dict(document) if full else apply_patch(self.desired, document)
        if version is not None:
            self.desired_version = version
        keys = sorted(k for k in self.desired if not k.startswith("$"))
        self.log.info("desired_applied", version=version, keys=keys)
        if self.hook is None:
            return
        try:
            self.hook(copy.deepcopy(self.desired))
        except Exception as error:
            self.log.error(
                "on_twin_failed",
                version=version,
                error=f"{type(error).__name__}: {error}",
                traceback="".join(traceback.format_exception(error)),
            )

    # ---- SDK threads -----------------------------------------------------------------------

    def _on_message(self, message: Any) -> None:
        if not self._stopping:  # once stopping, the hub keeps it and delivers it again
            self.work.put(message)

    def _on_patch(self, patch: dict[str, Any]) -> None:
        """A desired-properties change: read the whole twin (after a reconnect the SDK passes
        the full desired properties as a "patch", which a merge cannot tell from one)."""
        try:
            document = self.client.get_twin().get("desired") or {}
        except Exception:  # noqa: BLE001 - merge what we were given instead
            self.work.put(_Desired(dict(patch), full=False))
        else:
            self.work.put(_Desired(document, full=True))

    def _on_connection_state(self) -> None:
        if not self._stopping:
            self.log.info("connection", connected=bool(self.client.connected))

    def _on_background_exception(self, error: Exception) -> None:
        self.log.warning("sdk_background_error", error=f"{type(error).__name__}: {error}")

    def _report_loop(self) -> None:
        while not self._reporter_stop.wait(self.options.report_interval):
            self._report()

    def _report(self, status: str = "running") -> None:
        """Patch the reported properties when they changed (a null removes a key)."""
        document: dict[str, Any] = {
            "pid": os.getpid(),
            "status": status,
            "started": self.started,
            "desired_version": self.desired_version,
            **asdict(self.counts),
        }
        if document == self._last_reported:
            return
        try:
            self.client.patch_twin_reported_properties({REPORTED_KEY: document})
            self._last_reported = document
        except Exception as error:  # noqa: BLE001 - tried again at the next interval
            self.log.warning("report_failed", error=f"{type(error).__name__}: {error}")


def create_client() -> Any:
    """The SDK client from the edge environment; ValueError (one line) when it is unusable."""
    from azure.iot.device import IoTHubModuleClient

    ca_file = os.environ.get(ENV_CA_FILE, "")
    try:
        pem = Path(ca_file).read_text(errors="replace")
    except OSError as error:
        raise ValueError(f"cannot read {ENV_CA_FILE} {ca_file}: {error.strerror}") from None
    if "-----BEGIN CERTIFICATE-----" not in pem:
        raise ValueError(f"{ENV_CA_FILE} {ca_file} holds no PEM certificate")
    try:
        return IoTHubModuleClient.create_from_edge_environment()
    except Exception as error:  # noqa: BLE001 - the SDK raises OSError, ValueError, its own
        raise ValueError(f"cannot use the edge environment: {error}") from None


def setup_logging(log: logs.JsonLog) -> None:
    """stdlib logging (the SDK's, the script's) as JSON lines; the SDK's from warnings up."""
    root = logging.getLogger()
    root.handlers[:] = [logs.ForwardHandler(log)]
    root.setLevel(logging.INFO)
    logging.getLogger("azure").setLevel(logging.WARNING)
    logging.getLogger("paho").setLevel(logging.WARNING)


def prepare_process(options: ModuleOptions, log: logs.JsonLog) -> None:
    """Environment and import path as an Azure ML script expects them (as a worker's)."""
    os.environ[ENV_ENTRY_SCRIPT] = str(options.entry_script)
    if options.model_dir is not None:
        os.environ[ENV_MODEL_DIR] = str(options.model_dir)
    elif ENV_MODEL_DIR not in os.environ:
        log.warning("no_model_dir", message=f"{ENV_MODEL_DIR} is not set (use --model-dir)")
    app_root = str(options.app_root) if options.app_root else os.environ.get(ENV_APP_ROOT)
    app_root = app_root or os.getcwd()
    os.environ[ENV_APP_ROOT] = app_root
    script_dir = str(options.entry_script.parent)
    if script_dir not in sys.path:
        sys.path.insert(0, script_dir)
    if app_root not in sys.path:
        sys.path.append(app_root)
    try:
        sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    except (AttributeError, ValueError):
        pass


def run_bounded(func: Callable[[], Any], timeout_s: float) -> None:
    """Run ``func`` on a daemon thread, waiting at most ``timeout_s`` (SDK calls can hang)."""
    thread = threading.Thread(target=func, daemon=True)
    thread.start()
    thread.join(timeout_s)


def is_text(content_type: str | None) -> bool:
    if not content_type:
        return False
    return content_type == JSON_TYPE or content_type.startswith(("text/", "application/json"))
