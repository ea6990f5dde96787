"""The master process: binds the port and supervises the workers.

:func:`serve` binds the listening sockets (one per worker with
``SO_REUSEPORT``, see ``listen``), forks ``options.workers`` workers that
accept on them, and then only supervises:

* a worker that exits before it reported ready (its script failed to
  import or ``init()`` raised, or it crashed while starting) stops the
  whole server: exit status 3 for an init failure, 1 otherwise;
* a worker that dies after it was ready is respawned in the same slot
  (its ``init()`` runs again);
* a worker stuck in ``run()`` well past the timeout (blocked in C code
  that the timer signal cannot interrupt) is killed, then respawned;
* SIGTERM or SIGINT stops the workers gracefully (each finishes its
  requests, up to ``graceful_timeout``), kills what is left, and
  returns 0. A second SIGINT kills at once.

The master never imports the user's script. Logs are JSON lines on
stdout (``logs``); the ``listening`` line gives the bound port, useful
with ``--port 0``; the ``ready`` line says every worker has initialised.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import sys
import time
import traceback
from dataclasses import dataclass
from typing import Any

from modelform.runtime import logs
from modelform.runtime.listen import bind_listeners, close_all
from modelform.runtime.metrics import SharedMetrics
from modelform.runtime.options import ServeOptions, take_secrets
from modelform.runtime.worker import EXIT_INIT_FAILED, READY_MESSAGE, STOP_SIGNALS, run_worker

EXIT_OK = 0
EXIT_ERROR = 1
_TICK_S = 0.25


@dataclass
class _Worker:
    index: int
    pid: int
    ready: bool = False


def serve(options: ServeOptions) -> int:
    """Run the scoring server in the foreground; return the process exit status."""
    options = options.validate()
    take_secrets(os.environ)  # the keys live in ``options`` from here on
    log = logs.JsonLog(role="master")
    try:
        sockets = bind_listeners(options.host, options.port, options.workers)
    except OSError as error:
        log.error("bind_failed", host=options.host, port=options.port, error=str(error))
        reason = error.strerror or str(error)
        print(f"error: cannot listen on {options.host}:{options.port}: {reason}", file=sys.stderr)
        return EXIT_ERROR
    try:
        return _Master(options, sockets, log).run()
    finally:
        close_all(sockets)


class _Master:
    def __init__(
        self, options: ServeOptions, sockets: list[socket.socket], log: logs.JsonLog
    ) -> None:
        self.options = options
        self.sockets = sockets
        self.sock = sockets[0]
        self.log = log
        self.shared = SharedMetrics(options.workers)
        self.workers: dict[int, _Worker] = {}
        self.exit_code = EXIT_OK
        self.stop_signals = 0
        self.announced = False

    def run(self) -> int:
        ready_r, ready_w = os.pipe()
        wake_r, wake_w = os.pipe()
        for fd in (ready_r, wake_r, wake_w):
            os.set_blocking(fd, False)
        self._fds = (ready_r, ready_w, wake_r, wake_w)
        previous = self._install_signals(wake_w)
        host, port = self.sock.getsockname()[:2]
        self.log.info(
            "listening",
            host=host,
            port=port,
            workers=self.options.workers,
            entry_script=str(self.options.entry_script),
            model_dir=str(self.options.model_dir) if self.options.model_dir else None,
            timeout_s=self.options.timeout,
            reuse_port=len({id(sock) for sock in self.sockets}) > 1,
            max_body_bytes=self.options.max_body_bytes,
            auth="key" if self.options.auth_keys else "none",
        )
        try:
            for index in range(self.options.workers):
                self._spawn(index)
            while not self.stop_signals and self.exit_code == EXIT_OK:
                select.select([ready_r, wake_r], [], [], _TICK_S)
                _drain(wake_r)
                self._read_ready(ready_r)
                self._reap()
                self._watchdog()
        finally:
            self._stop()
            self._restore_signals(previous)
            for fd in self._fds:
                os.close(fd)
        self.log.info("stopped", exit_code=self.exit_code)
        return self.exit_code

    # -- workers -------------------------------------------------------------
    def _spawn(self, index: int) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        master_pid = os.getpid()
        # Block stop signals across fork: the child unblocks them once its own handlers are set.
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        pid = os.fork()
        if pid == 0:  # the worker
            code = EXIT_ERROR
            try:
                signal.set_wakeup_fd(-1)
                ready_r, ready_w, wake_r, wake_w = self._fds
                for fd in (ready_r, wake_r, wake_w):
                    os.close(fd)
                mine = self.sockets[index]
                for other in self.sockets:
                    if other is not mine:
                        other.close()
                code = run_worker(self.options, mine, index, ready_w, self.shared, master_pid)
            except SystemExit as exit_:
                code = exit_.code if isinstance(exit_.code, int) else EXIT_ERROR
            except BaseException:  # noqa: BLE001 - report, never return into the master's code
                logs.print_traceback(traceback.format_exc())
            finally:
                os._exit(code)
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        self.workers[pid] = _Worker(index, pid)
        self.log.info("worker_started", worker=index, worker_pid=pid)

    def _read_ready(self, fd: int) -> None:
        try:
            data = os.read(fd, 4096)
        except BlockingIOError:
            return
        for offset in range(0, len(data) - len(data) % READY_MESSAGE.size, READY_MESSAGE.size):
            index, _ = READY_MESSAGE.unpack_from(data, offset)
            for worker in self.workers.values():
                if worker.index == index:
                    worker.ready = True
        if (
            not self.announced
            and len(self.workers) == self.options.workers
            and all(w.ready for w in self.workers.values())
        ):
            self.announced = True
            host, port = self.sock.getsockname()[:2]
            self.log.info(
                "ready", url=f"http://{_url_host(host)}:{port}/score", workers=len(self.workers)
            )

    def _reap(self) -> None:
        while self.workers:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            worker = self.workers.pop(pid, None)
            if worker is None:
                continue
            code = os.waitstatus_to_exitcode(status)
            self.shared.clear_worker(worker.index)
            if self.stop_signals:
                continue
            if not worker.ready:
                self.exit_code = EXIT_INIT_FAILED if code == EXIT_INIT_FAILED else EXIT_ERROR
                reason = (
                    "its script failed to load or init() raised"
                    if code == EXIT_INIT_FAILED
                    else "it crashed while starting"
                )
                self.log.error(
                    "worker_failed", worker=worker.index, worker_pid=pid, exit=code, reason=reason
                )
                return
            self.log.warning("worker_died", worker=worker.index, worker_pid=pid, exit=code)
            self.shared.count_restart(worker.index)
            self._spawn(worker.index)

    def _watchdog(self) -> None:
        timeout = self.options.timeout
        if timeout is None:
            return
        limit_ns = int((2 * timeout + 5) * 1e9)
        now = time.monotonic_ns()
        for worker in self.workers.values():
            since = self.shared.busy_since_ns(worker.index)
            if since and now - since > limit_ns:
                self.log.error(
                    "worker_stuck",
                    worker=worker.index,
                    worker_pid=worker.pid,
                    busy_s=round((now - since) / 1e9, 1),
                )
                self.shared.clear_worker(worker.index)
                _kill(worker.pid, signal.SIGKILL)

    def _stop(self) -> None:
        for worker in self.workers.values():
            _kill(worker.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.options.graceful_timeout + 2
        while self.workers and time.monotonic() < deadline and self.stop_signals < 2:
            self._reap_quietly()
            time.sleep(0.05)
        for worker in self.workers.values():
            _kill(worker.pid, signal.SIGKILL)
        for pid in list(self.workers):
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
        self.workers.clear()

    def _reap_quietly(self) -> None:
        while self.workers:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                self.workers.clear()
                return
            if pid == 0:
                return
            self.workers.pop(pid, None)

    # -- signals -------------------------------------------------------------
    def _install_signals(self, wake_fd: int) -> dict[int, Any]:
        previous: dict[int, Any] = {}
        for signum in (signal.SIGTERM, signal.SIGINT):
            previous[signum] = signal.signal(signum, self._on_stop)
        previous[signal.SIGCHLD] = signal.signal(signal.SIGCHLD, _noop)
        previous[-1] = signal.set_wakeup_fd(wake_fd)
        return previous

    def _restore_signals(self, previous: dict[int, Any]) -> None:
        signal.set_wakeup_fd(previous.pop(-1))
        for signum, handler in previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)

    def _on_stop(self, signum: int, frame: Any) -> None:
        if not self.stop_signals:
            self.log.info("stopping", signal=signal.Signals(signum).name)
        self.stop_signals += 1


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 512):
            pass
    except BlockingIOError:
        pass


def _kill(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def _noop(signum: int, frame: Any) -> None:
    return None


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
