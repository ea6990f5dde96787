"""The edge where files meet the engine: project file, state backend, lock.

A :class:`Workspace` loads the project file, opens the state backend and
turns state into the plain records the planner uses and back. Commands
use it; the engine never touches files or locks itself.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelform.cli import backendsel
from modelform.engine import sensitive
from modelform.engine.config import Config
from modelform.engine.loader import load
from modelform.engine.planner import Records, Run
from modelform.engine.provider import Context
from modelform.engine.registry import Registry, catalog
from modelform.state import Backend, LockInfo, State, StateError

DEFAULT_FILE = "modelform.yaml"
WORK_DIR = ".modelform"


@dataclass
class Options:
    file: Path = Path(DEFAULT_FILE)
    state: Path | None = None
    var: list[str] = field(default_factory=list)
    var_file: list[Path] = field(default_factory=list)
    lock_timeout: float = 0.0
    parallelism: int = 10
    #: False with ``-lock=false``: commands that change the state do not lock it.
    lock: bool = True


def find_project_file(path: Path) -> Path:
    if path.is_dir():
        return path / DEFAULT_FILE
    return path


class Workspace:
    def __init__(
        self,
        opts: Options,
        log: Callable[[str, str], None] = lambda address, line: None,
        note: Callable[[str], None] = lambda line: None,
    ) -> None:
        self.opts = opts
        self.file = find_project_file(opts.file).absolute()
        self.dir = self.file.parent
        self.work_dir = self.dir / WORK_DIR
        #: A local state file named for this command (--state, MODELFORM_STATE).
        self.state_override = opts.state or backendsel.env_override()
        self._chosen: backendsel.Chosen | None = None
        self.registry = Registry()
        self.log = log
        #: Where a one-line warning about the lock goes (the view).
        self.note = note
        self._config: Config | None = None
        #: Where the secrets of the project file go (the view's, set by the CLI).
        self.redactor = sensitive.Redactor()

    @property
    def chosen(self) -> backendsel.Chosen:
        """The state backend the project file names (or --state overrides), opened
        on first use; :class:`~modelform.cli.backendsel.BackendChanged` when the
        state is still in the place used before."""
        if self._chosen is None:
            self._chosen, note = backendsel.choose(self.file, self.work_dir, self.state_override)
            if note:
                self.note(note)
        return self._chosen

    @property
    def backend(self) -> Backend:
        return self.chosen.backend

    @property
    def config(self) -> Config:
        if self._config is None:
            cat = catalog(self.registry)
            self._config = load(self.file, self.opts.var, self.opts.var_file, os.environ, cat)
            found = sensitive.from_config(self._config, cat)
            self.redactor.add(found.values)
            self.redactor.add_keys(found.keys)
        return self._config

    def read_state(self) -> State | None:
        state = self.backend.read()
        self.chosen.answered()
        return state

    def run(self, state: State | None, cancelled: Callable[[], bool] = lambda: False) -> Run:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        lineage = state.lineage if state else str(uuid.uuid4())
        return Run(
            config=self.config,
            registry=self.registry,
            work_dir=self.work_dir,
            lineage=lineage,
            log=self.log,
            cancelled=cancelled,
            parallelism=self.opts.parallelism,
        )

    @contextlib.contextmanager
    def locked(self, operation: str) -> Iterator[None]:
        """Hold the state lock for the ``with`` body, and say in one line when it
        took over a gone holder's lock; with ``-lock=false`` take none and say so."""
        if not self.opts.lock:
            self.note(
                f"the state ({self.backend.describe()}) is not locked (-lock=false): "
                "another modelform may change it at the same time"
            )
            yield
            return
        info = self.backend.lock(operation, self.opts.lock_timeout)
        if self.backend.lock_note:
            self.note(self.backend.lock_note)
        try:
            yield
        except BaseException as exc:
            # The body's error comes first (the storage went away mid-apply, say);
            # a lock that could not be released as well is said with it.
            try:
                self.backend.unlock(info.id)
            except StateError as e:
                exc.add_note(
                    f"releasing the state lock failed too ({e}); {self._unlock_hint(info)}"
                )
            raise
        try:
            self.backend.unlock(info.id)
        except StateError as e:
            e.add_note(self._unlock_hint(info))
            raise

    def _unlock_hint(self, info: LockInfo) -> str:
        return (
            f"if it is still held, release it with `{self.command('force-unlock', info.id)}` "
            "once the state can be reached"
        )

    def command(self, *args: str) -> str:
        """The shell command running ``modelform ARGS`` on this project from the
        current folder (for hints: ``-chdir``, ``-f`` and ``--state`` as needed)."""
        parts = ["modelform"]
        here = Path.cwd()
        if self.dir != here:
            rel = os.path.relpath(self.dir, here)
            parts.append(f"-chdir={self.dir if rel.startswith('..') else rel}")
        if self.file.name != DEFAULT_FILE:
            parts += ["-f", self.file.name]
        if self.opts.state is not None:
            parts += ["--state", str(self.opts.state.absolute())]
        return shlex.join([*parts, *args])


def record_context(
    run: Run, rec: dict[str, Any], kids: dict[str, dict[str, dict[str, Any]]]
) -> Context:
    """The provider context of a recorded resource: where it lives, its type
    and children (``kids``: :func:`~modelform.engine.resources.child_index`
    of the records, made once by the caller). For status, logs and the like,
    which read records outside a plan."""
    from modelform.engine.planner import record_target

    if not run.nodes:
        run.desired()
    children = {n: r["attributes"] for n, r in kids.get(rec["address"], {}).items()}
    return run.context(rec["address"], record_target(run, rec["address"], rec),
                       rec.get("type", ""), children)  # fmt: skip


def to_records(state: State | None) -> Records:
    if state is None:
        return {}
    return {a: r.to_json() for a, r in state.resources.items()}
