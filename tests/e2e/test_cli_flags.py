"""Terraform's ``-input=false``, ``-no-color`` and ``-lock=false``, through the executable."""

from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelform.state import LocalBackend
from tests.e2e.exe import MODELFORM, env, modelform, write_project
from tests.e2e.helpers import Result, free_port, our_processes

ANSI = "\x1b["


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Path]:
    root = write_project(tmp_path / "p", free_port())
    try:
        yield root
    finally:
        modelform("destroy", "-auto-approve", "-lock=false", cwd=root)
        assert our_processes(root) == set()


class Terminal:
    """The command with stdin, stdout and stderr on a pseudo-terminal, as in a shell."""

    def __init__(self, *args: str, cwd: Path, ci: bool = False) -> None:
        master, slave = pty.openpty()
        self.master = master
        # A person at a terminal: not CI (the test suite itself runs with CI=true).
        extra = {k: v for k, v in env(TERM="xterm").items() if k not in ("NO_COLOR", "CI")}
        if ci:
            extra["CI"] = "true"
        self.proc = subprocess.Popen(
            [str(MODELFORM), *args], cwd=cwd, stdin=slave, stdout=slave, stderr=slave, env=extra
        )
        os.close(slave)
        self.seen = ""

    def read_until(self, text: str | None, timeout: float = 120) -> str:
        """Read until ``text`` shows (None: until the command closes the terminal)."""
        while text is None or text not in self.seen:
            ready, _, _ = select.select([self.master], [], [], timeout)
            assert ready, f"nothing more after {timeout}s; so far: {self.seen!r}"
            try:
                chunk = os.read(self.master, 65536)
            except OSError:  # EIO: every end of the terminal is closed
                chunk = b""
            if not chunk:
                assert text is None, f"{text!r} never came: {self.seen!r}"
                break
            self.seen += chunk.decode(errors="replace")
        return self.seen

    def type(self, line: str) -> None:
        os.write(self.master, line.encode() + b"\n")

    def finish(self) -> Result:
        self.read_until(None)
        code = self.proc.wait(timeout=60)
        os.close(self.master)
        return Result(code, self.seen, "")


def test_no_color_leaves_no_escape_code_even_on_a_terminal(project: Path) -> None:
    coloured = Terminal("plan", cwd=project).finish()
    assert coloured.code == 0 and "2 to add, 0 to change" in coloured.out, coloured.out
    assert ANSI in coloured.out  # a terminal gets styles: the flag has something to remove
    for cmd in (["plan"], ["validate"], ["drift", "-allow-missing-state"]):
        plain = Terminal(*cmd, "-no-color", cwd=project).finish()
        assert plain.code == 0, plain.out
        assert ANSI not in plain.out, (cmd, plain.out)
    plain = Terminal("plan", "-no-color", cwd=project).finish()
    assert "Plan: 2 to add" in plain.out


def test_apply_asks_on_a_terminal_but_never_with_input_false(project: Path) -> None:
    asked = Terminal("apply", "-no-color", cwd=project)
    asked.read_until("Enter a value:")
    asked.type("no")
    r = asked.finish()
    assert r.code == 1 and "apply cancelled: not confirmed" in r.out, r.out

    r = Terminal("apply", "-input=false", "-no-color", cwd=project).finish()
    assert r.code == 1, r.out
    assert "Enter a value" not in r.out, r.out
    assert "apply cannot ask for approval (-input=false): pass -auto-approve" in r.out, r.out
    # CI set, even on a (pseudo-)terminal: no prompt, no colour, one line naming the flag
    r = Terminal("apply", cwd=project, ci=True).finish()
    assert r.code == 1 and "Enter a value" not in r.out and ANSI not in r.out, r.out
    assert "apply cannot ask for approval (CI is set): pass -auto-approve" in r.out, r.out
    assert our_processes(project) == set()
    assert not (project / ".modelform" / "state.json").exists()

    r = modelform("apply", "-input=true", "-auto-approve", cwd=project)
    assert r.code == 0, r.text
    running = our_processes(project)
    assert len(running) == 1
    r = Terminal("destroy", "-input=false", "-no-color", cwd=project).finish()
    assert r.code == 1, r.out
    assert "Enter a value" not in r.out and "destroy cannot ask for approval" in r.out, r.out
    assert our_processes(project) == running


def test_lock_false_applies_beside_a_held_lock_and_says_so(project: Path) -> None:
    backend = LocalBackend(project / ".modelform" / "state.json")
    held = backend.lock("apply")  # this (live) test process holds the lock
    try:
        refused = modelform("apply", "-auto-approve", cwd=project)
        assert refused.code == 1 and f"lock id {held.id}" in refused.err, refused.text
        r = modelform("apply", "-auto-approve", "-lock=false", cwd=project)
        assert r.code == 0, r.text
        warning = (
            f"Warning: the state ({backend.path}) is not locked (-lock=false): "
            "another modelform may change it at the same time"
        )
        assert warning in r.out.splitlines(), r.out
        assert "service.api" in backend.path.read_text()
        r = modelform("state", "mv", "-lock=false", "service.nope", "service.other", cwd=project)
        assert r.code == 1 and warning in r.out and "lock id" not in r.err, r.text
        assert backend.lock_info() == held  # never touched
    finally:
        backend.unlock(held.id)


@pytest.mark.parametrize("cmd", ["plan", "apply", "destroy", "drift", "state rm", "state mv"])
def test_terraform_flags_parse_with_single_and_double_dashes(tmp_path: Path, cmd: str) -> None:
    flags = {
        "plan": ["-input=false", "-lock=false", "-no-color", "--input", "false"],
        "apply": ["-input=false", "-lock=FALSE", "-no-color", "--lock=true"],
        "destroy": ["-input=false", "-lock=false", "--no-color"],
        "drift": ["-input=false", "-lock=false", "-no-color"],
        "state rm": ["-lock=false"],
        "state mv": ["-lock", "false"],
    }[cmd]
    r = modelform(*cmd.split(), *flags, "--help", cwd=tmp_path)
    assert r.code == 0 and r.out.startswith(f"Usage: modelform {cmd}"), r.text
    bad = modelform(*cmd.split(), "-lock=maybe", cwd=tmp_path)
    assert bad.code == 1 and "'maybe' is not one of 'true', 'false'" in bad.err, bad.text


def test_refresh_false_as_terraform_spells_it_plans_from_state_alone(tmp_path: Path) -> None:
    """``-refresh=false`` (Terraform's spelling) and ``-no-refresh`` skip reading the
    real objects: a killed process is not seen as drift."""
    from tests.e2e.helpers import copy_quickstart, free_port

    p = copy_quickstart(tmp_path / "q")
    var = ("-var", f"port={free_port()}")
    try:
        assert p.run("apply", "-auto-approve", *var).code == 0
        pid = {r["address"]: r for r in p.state()["resources"]}["service.diabetes-dev"]
        os.kill(pid["attributes"]["pid"], signal.SIGKILL)
        for flag in ("-refresh=false", "-refresh", "-no-refresh"):
            args = (flag, "false") if flag == "-refresh" else (flag,)
            r = p.run("plan", "-detailed-exitcode", *args, *var)
            assert r.code == 0 and "No changes." in r.out, (flag, r.text)
        r = p.run("plan", "-detailed-exitcode", "-refresh=true", *var)
        assert r.code == 2 and "has been deleted" in r.out, r.text
    finally:
        p.cleanup()
