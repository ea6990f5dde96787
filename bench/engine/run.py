#!/usr/bin/env python3
"""Engine benchmark: modelform beside OpenTofu, in one run.

1. The first ``plan`` of a generated project of 2,000 services, all to create
   (nothing applied yet), beside OpenTofu planning 2,000 new ``terraform_data``
   resources. The whole plan is printed (to a file), as a user would see it.
2. A no-op ``plan`` of generated projects of 1,000 and 10,000 services, already
   applied, beside OpenTofu planning as many applied ``terraform_data``.

Every service's target kind is ``instant`` (the plugin in bench/plugins,
found like any third-party provider: a distribution on PYTHONPATH, its
module beside its dist-info in a temp folder, never installed into the venv):
it answers every read and plan at once, so the engine alone is measured.
``terraform_data`` needs no provider download. Wall time, CPU time and peak
memory (max RSS) of each process; the tools take turns, round after round, and
each figure is the fastest round (the one least disturbed on a shared machine).
``--baseline-python`` times a second modelform (another checkout's venv) side
by side with this one.

3. ``apply`` of 20 local-target services (real scoring-runtime processes) with
   -parallelism 10 and 1.

OpenTofu is built from the Go module proxy with the preinstalled Go once, and
cached under ${MODELFORM_CACHE:-~/.cache/modelform}/bench/tofu. Results: printed
as Markdown and written to bench/engine/results.json.

Usage: python bench/engine/run.py [--first 2000] [--sizes 1000,10000]
           [--rounds 3] [--baseline-python /tmp/old/.venv/bin/python]
           [--no-tofu] [--no-apply]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

CACHE = Path(os.environ.get("MODELFORM_CACHE", Path.home() / ".cache" / "modelform")) / "bench"
TOFU_VERSION = "v1.10.7"

Run = tuple[float, float, float]  # wall seconds, CPU seconds, peak RSS in MB


def sh(cmd: list[str], cwd: Path | None = None, env: dict[str, str] | None = None) -> None:
    subprocess.run(cmd, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL)


def measured(cmd: list[str], cwd: Path, env: dict[str, str] | None, out: Path) -> Run:
    """One run, its output written to ``out``; it must exit 0 or 2."""
    with open(out, "wb") as f:
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=f, stderr=subprocess.PIPE)
        _, status, usage = os.wait4(p.pid, 0)
        elapsed = time.perf_counter() - t0
    code = os.waitstatus_to_exitcode(status)
    assert p.stderr is not None
    if code not in (0, 2):
        raise SystemExit(f"{' '.join(cmd)} exited {code}: {p.stderr.read().decode()[-2000:]}")
    return elapsed, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


class Case:
    """One tool's plan of one project: the command, where, and a line its
    output must hold (so a plan that did less than asked is caught)."""

    def __init__(self, cmd: list[str], cwd: Path, expect: str, env: dict[str, str] | None = None):
        self.cmd, self.cwd, self.expect, self.env = cmd, cwd, expect, env
        self.runs: list[Run] = []

    def once(self) -> None:
        out = self.cwd.parent / f"{self.cwd.name}.out"
        self.runs.append(measured(self.cmd, self.cwd, self.env, out))
        if self.expect not in out.read_text(errors="replace"):
            raise SystemExit(f"{' '.join(self.cmd)} in {self.cwd}: no {self.expect!r} in {out}")

    def best(self) -> Run:
        """The fastest run (wall), its CPU time, and the largest peak RSS."""
        wall, cpu, _ = min(self.runs)
        return wall, cpu, max(r[2] for r in self.runs)


def build_tofu() -> Path:
    out = CACHE / "tofu" / TOFU_VERSION / "tofu"
    if out.exists():
        return out
    print(f"building OpenTofu {TOFU_VERSION} (a few minutes, once)", file=sys.stderr)
    env = {**os.environ, "GOFLAGS": "-mod=mod", "CGO_ENABLED": "0", "GOTOOLCHAIN": "local"}
    info = json.loads(
        subprocess.run(
            ["go", "mod", "download", "-json", f"github.com/opentofu/opentofu@{TOFU_VERSION}"],
            check=True, capture_output=True, text=True, env=env,
        ).stdout
    )  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "opentofu"
        shutil.copytree(info["Dir"], src)
        for p in src.rglob("*"):
            p.chmod(0o755 if p.is_dir() else 0o644)
        out.parent.mkdir(parents=True, exist_ok=True)
        sh(
            ["go", "build", "-trimpath", "-ldflags", "-s -w", "-o", str(out), "./cmd/tofu"],
            src,
            env,
        )
    return out


def instant_env(python: str, into: Path) -> dict[str, str]:
    """The environment in which ``python``'s modelform finds the ``instant`` plugin
    of its own checkout (the provider protocol may differ between checkouts).

    ``into`` becomes a folder holding the plugin's module and a dist-info made
    from its pyproject.toml (name, version, entry points); on PYTHONPATH it is
    an installed distribution to :mod:`importlib.metadata`, as a ``pip
    install`` would make it, and nothing is installed into the venv.
    """
    src = checkout_of(python) / "bench" / "plugins" / "instant"
    meta = tomllib.loads((src / "pyproject.toml").read_text())["project"]
    into.mkdir(parents=True)
    for module in src.glob("*.py"):
        shutil.copy(module, into)
    info = into / f"{meta['name'].replace('-', '_')}-{meta['version']}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {meta['name']}\nVersion: {meta['version']}\n"
    )
    groups = [
        f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in eps.items())
        for group, eps in meta.get("entry-points", {}).items()
    ]
    (info / "entry_points.txt").write_text("\n".join(groups))
    path = os.pathsep.join(p for p in (str(into), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path}


def modelform_project(root: Path, n: int) -> None:
    (root / "src").mkdir(parents=True)
    (root / "src" / "score.py").write_text(
        "def init():\n    pass\n\ndef run(data):\n    return data\n"
    )
    lines = ["project: bench", "targets:", "  fast: {kind: instant}", "services:"]
    for i in range(n):
        lines += [f"  svc-{i:05d}:", "    target: fast", "    entry_script: src/score.py",
                  f"    port: {10000 + i}"]  # fmt: skip
    (root / "modelform.yaml").write_text("\n".join(lines) + "\n")


def tofu_project(root: Path, n: int) -> None:
    root.mkdir(parents=True)
    blocks = [
        f'resource "terraform_data" "svc_{i:05d}" {{\n  input = {{ port = {10000 + i} }}\n}}\n'
        for i in range(n)
    ]
    (root / "main.tf").write_text("\n".join(blocks))


def plan_cases(
    kind: str,
    n: int,
    work: Path,
    engines: dict[str, list[str]],
    envs: dict[str, dict[str, str]],
    tofu: Path | None,
) -> dict[str, Case]:
    """Projects of ``n`` services for every tool; ``kind`` is "first" (nothing
    applied: all to create) or "noop" (applied: nothing to do). ``envs``: each
    modelform's environment (:func:`instant_env`)."""
    cases = {}
    for name, mf in engines.items():
        d = work / f"{name}-{kind}-{n}"
        modelform_project(d, n)
        if kind == "noop":
            sh([*mf, "apply", "-auto-approve"], d, envs[name])
        # The target and n services.
        expect = f"Plan: {n + 1} to add" if kind == "first" else "No changes."
        cases[name] = Case([*mf, "plan", "-detailed-exitcode"], d, expect, envs[name])
    if tofu is not None:
        # An empty CLI configuration: no user's settings (or warning about a
        # missing file) in the way.
        rc = work / "tofurc"
        rc.touch()
        env = {**os.environ, "TF_IN_AUTOMATION": "1", "CHECKPOINT_DISABLE": "1",
               "TF_CLI_CONFIG_FILE": str(rc)}  # fmt: skip
        d = work / f"tofu-{kind}-{n}"
        tofu_project(d, n)
        sh([str(tofu), "init", "-input=false"], d, env)
        if kind == "noop":
            sh([str(tofu), "apply", "-auto-approve", "-input=false", "-parallelism=10"], d, env)
        expect = f"Plan: {n} to add" if kind == "first" else "No changes."
        # Plain text, as modelform writes to a file (OpenTofu colours it otherwise).
        plan = [str(tofu), "plan", "-input=false", "-no-color", "-detailed-exitcode"]
        cases["tofu"] = Case(plan, d, expect, env)
    return cases


def bench_plan(
    kind: str,
    n: int,
    work: Path,
    engines: dict[str, list[str]],
    envs: dict[str, dict[str, str]],
    tofu: Path | None,
    rounds: int,
) -> dict[str, object]:
    cases = plan_cases(kind, n, work, engines, envs, tofu)
    for _ in range(rounds):  # the tools take turns, so a busy spell hits each alike
        for case in cases.values():
            case.once()
    row: dict[str, object] = {"plan": kind, "services": n}
    for name, case in cases.items():
        wall, cpu, mb = case.best()
        row[f"{name}_s"], row[f"{name}_cpu_s"] = round(wall, 2), round(cpu, 2)
        row[f"{name}_mb"] = round(mb)
        row[f"{name}_runs_s"] = [round(r[0], 2) for r in case.runs]
    ours = cases["modelform"].best()[0]
    for other in ("baseline", "tofu"):
        if other in cases:
            row[f"{other}_over_modelform"] = round(cases[other].best()[0] / ours, 2)
    print(json.dumps(row), file=sys.stderr)
    return row


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def bench_apply(work: Path, n: int = 20) -> dict[str, object]:
    root = work / "local-20"
    (root / "src").mkdir(parents=True)
    (root / "src" / "score.py").write_text(
        "import json\n\ndef init():\n    pass\n\ndef run(raw):\n    return json.loads(raw)\n"
    )
    lines = ["project: apply-bench", "services:"]
    for i in range(n):
        lines += [f"  svc-{i:02d}:", "    entry_script: src/score.py", f"    port: {free_port()}"]
    (root / "modelform.yaml").write_text("\n".join(lines) + "\n")
    mf = [sys.executable, "-m", "modelform.cli"]
    walls: dict[int, float] = {}
    for par in (10, 1):
        cmd = [*mf, "apply", "-auto-approve", "-parallelism", str(par)]
        walls[par] = round(measured(cmd, root, None, work / "apply.out")[0], 2)
        sh([*mf, "destroy", "-auto-approve"], root)
    out: dict[str, object] = {"services": n}
    out.update(parallelism_10_s=walls[10], parallelism_1_s=walls[1])
    out["ratio_1_over_10"] = round(walls[1] / walls[10], 2)
    return out


def checkout_of(python: str) -> Path:
    """The source tree of the modelform that ``python`` imports."""
    engine = subprocess.run(
        [python, "-c", "import modelform.engine as e; print(e.__file__)"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    # resolve(): a strict editable install reaches the files through a link tree
    return Path(engine).resolve().parents[1]


def commit_of(python: str) -> str:
    """The commit of the modelform that ``python`` imports, and whether its
    working tree has changes (the shared tree often has)."""
    git = ["git", "-C", str(checkout_of(python))]
    head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run([*git, "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout.strip()  # fmt: skip
    return head.stdout.strip() + (" + uncommitted changes" if dirty else "")


def table(rows: list[dict[str, object]], names: list[str]) -> str:
    label = {"modelform": "modelform", "baseline": "baseline", "tofu": "OpenTofu"}
    head = ["plan", "services"] + [f"{label[n]} s (CPU s)" for n in names]
    head += [f"{label[n]} MB" for n in names]
    head += [f"{label[n]} ÷ modelform" for n in names if n != "modelform"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [str(r["plan"]), f"{r['services']:,}"]
        cells += [f"{r[f'{n}_s']} ({r[f'{n}_cpu_s']})" for n in names]
        cells += [str(r[f"{n}_mb"]) for n in names]
        cells += [f"{r[f'{n}_over_modelform']}×" for n in names if n != "modelform"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--first", type=int, default=2000, help="services in the first plan (0: none)")
    ap.add_argument("--sizes", default="1000,10000", help="services in the no-op plans ('': none)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--baseline-python", help="another modelform's Python, timed side by side")
    ap.add_argument("--no-tofu", action="store_true")
    ap.add_argument("--no-apply", action="store_true", help="skip the apply of local services")
    args = ap.parse_args()
    engines = {"modelform": [sys.executable, "-m", "modelform.cli"]}
    if args.baseline_python:
        engines["baseline"] = [args.baseline_python, "-m", "modelform.cli"]
    tofu = None if args.no_tofu else build_tofu()
    names = [*engines, *(["tofu"] if tofu else [])]
    sizes = [int(s) for s in args.sizes.split(",") if s]
    started = time.strftime("%Y-%m-%d %H:%M")
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="modelform-bench-") as tmp:
        work = Path(tmp)
        # Each modelform gets the plugin of its own checkout.
        envs = {name: instant_env(mf[0], work / f"plugin-{name}") for name, mf in engines.items()}
        rows = []
        if args.first:
            rows.append(bench_plan("first", args.first, work, engines, envs, tofu, args.rounds))
        rows += [bench_plan("noop", n, work, engines, envs, tofu, args.rounds) for n in sizes]
        apply_row = None if args.no_apply else bench_apply(work)
    result = {
        "date": started,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}",
        "load_average": [round(x, 1) for x in (*load_before, *os.getloadavg())],
        "command": " ".join(["python", "bench/engine/run.py", *sys.argv[1:]]),
        "modelform": commit_of(sys.executable),
        "baseline": commit_of(args.baseline_python) if args.baseline_python else None,
        "opentofu": TOFU_VERSION if tofu else None,
        "plans": rows,
        "apply_local": apply_row,
    }
    (Path(__file__).parent / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"modelform {result['modelform']}" +
          (f", baseline {result['baseline']}" if args.baseline_python else "") +
          f"; load average before/after {result['load_average']}")  # fmt: skip
    print(table(rows, names))
    if apply_row:
        print(f"\napply of 20 local services: {apply_row}")


if __name__ == "__main__":
    main()
