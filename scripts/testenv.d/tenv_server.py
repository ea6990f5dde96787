"""One background server built by testenv: build it, start it fresh, check it, stop it."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from tenv_common import Daemon, Layout, PartError, port_open, wait_until


class Server:
    """Subclasses say how to build, configure, start and probe one daemon."""

    name = "server"
    start_timeout = 60.0
    stop_timeout = 20.0

    def __init__(self, layout: Layout, versions: dict[str, str]) -> None:
        self.layout = layout
        self.versions = versions
        self.daemon = Daemon(self.name, layout)

    # -- to override ------------------------------------------------------------------------

    def ports(self) -> list[int]:
        return []

    def built(self) -> bool:
        raise NotImplementedError

    def build(self) -> None:
        raise NotImplementedError

    def prepare(self) -> None:
        """Write config and make its data folder fresh, before each start."""

    def argv(self) -> list[str]:
        raise NotImplementedError

    def environment(self) -> dict[str, str]:
        return dict(os.environ)

    def healthy(self) -> bool:
        raise NotImplementedError

    def describe(self) -> str:
        return ", ".join(f"127.0.0.1:{port}" for port in self.ports())

    # -- shared -----------------------------------------------------------------------------

    @property
    def data_dir(self) -> Path:
        return self.layout.data / self.name

    def fresh_data_dir(self) -> Path:
        shutil.rmtree(self.data_dir, ignore_errors=True)
        self.data_dir.mkdir(parents=True)
        return self.data_dir

    def ensure_built(self, build: bool) -> None:
        if self.built():
            return
        if not build:
            raise PartError(f"{self.name} is not built yet (run scripts/testenv up to build it)")
        self.build()

    def up(self, build: bool) -> str:
        pid = self.daemon.pid()
        if pid is not None:
            if self._healthy():
                return f"{self.name} already running (pid {pid})"
            self.daemon.stop(self.stop_timeout)  # ours but not answering: start it again
        taken = [port for port in self.ports() if port_open(port)]
        if taken:
            raise PartError(
                f"{self.name}: 127.0.0.1:{taken[0]} is taken by a process testenv did not "
                f"start; stop it, or move {self.name} with TESTENV_<NAME>_PORT "
                f"(see scripts/versions.env)"
            )
        self.ensure_built(build)
        self.prepare()
        pid = self.daemon.start(self.argv(), env=self.environment(), cwd=self.layout.root)
        waited = wait_until(self.name, self._healthy, self.start_timeout, daemon=self.daemon)
        return f"{self.name} started (pid {pid}, healthy after {waited:.1f} s)"

    def _healthy(self) -> bool:
        try:
            return self.healthy()
        except Exception:  # noqa: BLE001 - a failing probe means "not healthy"
            return False

    def down(self) -> list[str]:
        return [f"{self.name} stopped"] if self.daemon.stop(self.stop_timeout) else []

    def status(self) -> tuple[bool, str]:
        pid = self.daemon.pid()
        if pid is None:
            taken = [port for port in self.ports() if port_open(port)]
            if taken:
                return False, f"not started by testenv, but 127.0.0.1:{taken[0]} is taken"
            return False, "not running"
        if not self._healthy():
            return False, f"pid {pid} running but not healthy (log {self.daemon.log})"
        return True, f"pid {pid} on {self.describe()}"
