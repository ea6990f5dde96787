"""Data-driven plan tests: one folder per case under plancases/.

Each case holds ``modelform.yaml`` (with any files it names), ``state.json``
(the records of the last run: address → record, optional), ``reality.json``
(what the provider reads now: service name → attributes, or null when the
object is gone; services not listed read back as recorded), optionally
``args.json`` ({"mode": "destroy", "targets": [...], "replace": [...]}) and
``expected.txt``: one line per change, ``ACTION ADDRESS`` then ``  reason``
lines, then ``drift:`` lines ``KIND ADDRESS``. The ``fake`` provider plays the
target; the engine, loader, graph and decide are the real ones.

The same cases run against the real ``local`` provider too, so the expected
plans are not only the fake's own policy copied back. A case's ``local/``
folder holds ``before.yaml`` (the project file of the last run, on a local
target; none: the last run was empty), optionally ``before/`` (files laid over
the project for that run: an older model, older code), ``reality.json``
(service name → what happens to its process before the plan: ``"killed"``,
kill -9; ``"stopped"``, SIGSTOP, so it answers nothing) and ``expected.txt``.
The last run is really applied, processes on 127.0.0.1; then the case's own
project file (kind ``local``) is planned with the installed providers, with
the case's ``args.json``. Ports 9001–9009 in these files are nominal: each is
given a free port, in the project files and in ``expected.txt`` alike.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import select
import shutil
import signal
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from modelform.engine.apply import apply_plan
from modelform.engine.loader import load
from modelform.engine.modelstore import LocalStore
from modelform.engine.plan import Mode, Plan
from modelform.engine.planner import Records, Run, make_plan
from modelform.engine.registry import Registry, catalog
from modelform.engine.servicetest import post_score
from modelform.plugin import (
    UNKNOWN,
    Action,
    Applied,
    ApplyRequest,
    Context,
    Proposal,
    Provider,
    Resource,
    shared_options,
)
from modelform.providers import local_process as proc
from tests.e2e.helpers import free_port

CASES = sorted(p for p in (Path(__file__).parent / "plancases").iterdir() if p.is_dir())


class FakeProvider(Provider):
    kind = "fake"
    read_is_cheap = True

    def __init__(self, reality: dict[str, Any]) -> None:
        self.reality = reality

    def service_schema(self) -> dict[str, Any]:
        return {"type": "object", "properties": shared_options("port")}

    def apply(self, request: ApplyRequest, ctx: Context) -> Applied:
        raise AssertionError("plan cases never apply")

    def delete(self, address: str, prior: dict[str, Any], ctx: Context) -> None:
        raise AssertionError("plan cases never apply")

    def read(self, prior: dict[str, Any], ctx: Context) -> dict[str, Any] | None:
        name = prior["name"]
        if name in self.reality:
            now = self.reality[name]
            return None if now is None else {**prior, **now}
        return prior

    def plan(self, resource: Resource, prior: dict[str, Any] | None, ctx: Context) -> Proposal:
        cfg = resource.config
        models = {n: resource.inputs[f"model.{n}"]["ref"] for n in cfg.get("models", [])}
        planned = {
            "name": resource.name,
            "port": cfg.get("port"),
            "url": f"http://127.0.0.1:{cfg.get('port')}",
            "env": cfg.get("env") or {},
            "models": models,
            "code": resource.digests.get("code"),
            "id": prior["id"] if prior else UNKNOWN,
        }
        reasons = {}
        if prior and prior.get("models") != models:
            reasons["models"] = ", ".join(
                f"model {n}: {(prior.get('models') or {}).get(n)} → {r}" for n, r in models.items()
            )
        return Proposal(planned, requires_replace={"port"}, reasons=reasons)


def render(plan: Plan) -> str:
    lines = []
    for c in plan.changes:
        if c.action is Action.NOOP:
            continue
        lines.append(f"{c.action.value} {c.address}")
        lines += [f"  {r}" for r in c.reasons]
    for d in plan.drift:
        lines.append(f"drift: {d.kind} {d.address}")
    return "\n".join(lines) + "\n"


def _json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.exists() else {}  # type: ignore[no-any-return]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_plan_case(case: Path, tmp_path: Path) -> None:
    prior, reality, args = (_json(case / n) for n in ("state.json", "reality.json", "args.json"))
    registry = Registry(extra={"fake": FakeProvider(reality)})
    config = load(case / "modelform.yaml", catalog=catalog(registry))
    work = tmp_path / ".modelform"
    # The model store as the last run left it: versions named in state exist.
    for rec in prior.values():
        if rec["type"] == "model":
            a = rec["attributes"]
            src = tmp_path / "src-model"
            src.write_bytes(b"old")
            LocalStore(work / "models").register(a["name"], a["version"], a["digest"], src, {}, "")
    run = Run(
        config=config,
        registry=registry,
        work_dir=work,
        lineage="test",
        models=LocalStore(work / "models"),
    )
    plan = make_plan(
        run,
        prior,
        mode=Mode(args.get("mode", "normal")),
        targets=args.get("targets", []),
        replace=args.get("replace", []),
    )
    assert render(plan) == (case / "expected.txt").read_text()


# -- the same cases against the real local provider -----------------------------

LOCAL_CASES = [c for c in CASES if (c / "local").is_dir()]
NOMINAL_PORT = re.compile(r"\b900[1-9]\b")
#: What describes the fake's world, not the project: left out of the copy.
FAKE_ONLY = ("local", "state.json", "reality.json", "args.json", "expected.txt")


@dataclass
class Deployed:
    """One case's project folder, what its last run left running, its plan."""

    case: Path
    dir: Path
    ports: dict[str, str]
    records: Records = field(default_factory=dict)
    hung: list[int] = field(default_factory=list)
    rendered: str | None = None
    error: BaseException | None = None

    def persist(self, records: Records) -> None:
        self.records = records


def _localize(text: str, ports: dict[str, str]) -> str:
    """A case's text for the local target: kind local, real ports."""
    text = text.replace("kind: fake", "kind: local")
    return NOMINAL_PORT.sub(lambda m: ports[m.group(0)], text)


def _project_file(d: Deployed, source: Path) -> None:
    (d.dir / "modelform.yaml").write_text(_localize(source.read_text(), d.ports))


def _local_run(project: Path) -> Run:
    """A Run as cli.workspace builds one: the installed providers, the
    project's own model store and working folder."""
    registry = Registry()
    config = load(project / "modelform.yaml", catalog=catalog(registry))
    return Run(config=config, registry=registry, work_dir=project / ".modelform", lineage="test")


def _apply(d: Deployed, mode: Mode = Mode.NORMAL) -> None:
    run = _local_run(d.dir)
    plan = make_plan(run, d.records, mode=mode)
    result = apply_plan(run, plan, d.persist)
    if not result.ok:
        logs = "\n".join(f"--- {a}\n{text}" for a, text in result.logs.items() if text)
        raise AssertionError(
            f"{mode.value} apply failed: {result.failed}, skipped {result.skipped}\n{logs}"
        )


def _kill(pid: int, started: int) -> None:
    """kill -9, as a user would, and wait until the process has exited."""
    fd = os.pidfd_open(pid)
    try:
        assert proc.alive(pid, started), f"pid {pid} is not the process the last run started"
        signal.pidfd_send_signal(fd, signal.SIGKILL)
        readable, _, _ = select.select([fd], [], [], 30)
        assert readable, f"pid {pid} outlived SIGKILL by 30 s"
        with contextlib.suppress(ChildProcessError):  # ours: reap it
            os.waitid(os.P_PIDFD, fd, os.WEXITED | os.WNOHANG)
    finally:
        os.close(fd)


def _happen(d: Deployed, name: str, what: str) -> None:
    attrs = d.records[f"service.{name}"]["attributes"]
    if what == "killed":
        _kill(attrs["pid"], attrs["started"])
    elif what == "stopped":
        # Once killpg returns, SIGSTOP is pending on every process of the group:
        # none runs its own code again, so nothing answers /ready (the kernel
        # still accepts connections). No wait is needed.
        os.killpg(attrs["pid"], signal.SIGSTOP)
        d.hung.append(attrs["pid"])
    else:
        raise ValueError(f"{d.case.name}/local/reality.json: unknown {what!r} for {name}")


def _last_run(d: Deployed) -> None:
    """Apply the last run for real, make reality happen, put the case's own
    project back."""
    local = d.case / "local"
    over = local / "before"
    shutil.copytree(d.case, d.dir, ignore=shutil.ignore_patterns(*FAKE_ONLY))
    if over.is_dir():
        shutil.copytree(over, d.dir, dirs_exist_ok=True)
    if (local / "before.yaml").exists():
        _project_file(d, local / "before.yaml")
        _apply(d)
        for rec in d.records.values():
            if rec["type"] == "service":  # init() ran (it is ready); run() answers
                status, body = post_score(rec["attributes"], {"x": 1}, timeout=10)
                assert status == 200, f"{rec['address']}: /score answered {status}: {body!r}"
    for name, what in _json(local / "reality.json").items():
        _happen(d, name, what)
    if over.is_dir():  # the case's own files back where before/ stood in
        for f in (f for f in over.rglob("*") if f.is_file()):
            rel = f.relative_to(over)
            if (d.case / rel).exists():
                shutil.copy2(d.case / rel, d.dir / rel)
            else:
                (d.dir / rel).unlink()
    _project_file(d, d.case / "modelform.yaml")


def _plan(d: Deployed) -> None:
    args = _json(d.case / "args.json")
    plan = make_plan(
        _local_run(d.dir),
        d.records,
        mode=Mode(args.get("mode", "normal")),
        targets=args.get("targets", []),
        replace=args.get("replace", []),
    )
    d.rendered = render(plan)


def _attempt(step: Callable[[Deployed], None], d: Deployed) -> None:
    if d.error is not None:
        return
    try:
        step(d)
    except Exception as e:  # noqa: BLE001 - reported by the case's own test
        d.error = e


def _teardown(d: Deployed) -> list[str]:
    """Destroy what the case started; stop anything destroy left behind."""
    problems = []
    for pid in d.hung:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGCONT)
    try:
        if d.records:
            _apply(d, Mode.DESTROY)
    except Exception as e:  # noqa: BLE001 - reported after every case is cleaned
        problems.append(f"{d.case.name}: destroy: {e}")
    finally:
        for f in proc.find(d.dir.resolve()):
            problems.append(f"{d.case.name}: {f.address} (pid {f.pid}) outlived destroy")
            proc.stop(f.pid, f.started)
    return problems


def _nominal_ports(case: Path) -> list[str]:
    local = case / "local"
    files = (case / "modelform.yaml", local / "before.yaml", local / "expected.txt")
    text = "".join(f.read_text() for f in files if f.exists())
    return sorted(set(NOMINAL_PORT.findall(text)))


def _free_ports(n: int) -> list[str]:
    ports: set[int] = set()
    while len(ports) < n:
        ports.add(free_port())
    return [str(p) for p in ports]


@pytest.fixture(scope="module")
def deployed(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Deployed]]:
    """Every selected local case applied, then planned, all at once in
    parallel (most of the time is processes starting; the plans wait until
    every start is over, so no probe of theirs competes with one);
    destroyed at the end."""
    selected = (
        item.callspec.params["case"]  # type: ignore[attr-defined]
        for item in request.session.items
        if getattr(item, "originalname", "") == "test_plan_case_local"
    )
    chosen = list(dict.fromkeys(selected)) or LOCAL_CASES
    root = tmp_path_factory.mktemp("local-cases")
    nominal = {c: _nominal_ports(c) for c in chosen}
    free = iter(_free_ports(sum(len(v) for v in nominal.values())))
    cases = [Deployed(c, root / c.name, {p: next(free) for p in nominal[c]}) for c in chosen]
    try:
        with ThreadPoolExecutor(len(cases)) as pool:
            for step in (_last_run, _plan):
                list(pool.map(functools.partial(_attempt, step), cases))
        yield {d.case.name: d for d in cases}
    finally:
        with ThreadPoolExecutor(len(cases)) as pool:
            problems = [p for found in pool.map(_teardown, cases) for p in found]
        assert not problems, "\n".join(problems)


@pytest.mark.slow
@pytest.mark.parametrize("case", LOCAL_CASES, ids=[c.name for c in LOCAL_CASES])
def test_plan_case_local(case: Path, deployed: dict[str, Deployed]) -> None:
    d = deployed[case.name]
    if d.error is not None:
        raise d.error
    assert d.rendered == _localize((case / "local" / "expected.txt").read_text(), d.ports)
