"""Go builds from the module proxy into the cache: plain `go install` and wrapper modules."""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path

from tenv_common import Layout, PartError, output, run, say

GO_FALLBACK = Path("/usr/local/go/bin/go")


def go_binary() -> str:
    found = shutil.which("go") or (str(GO_FALLBACK) if GO_FALLBACK.exists() else None)
    if found is None:
        raise PartError("Go toolchain not found (expected on PATH or /usr/local/go/bin/go)")
    return found


def go_env(layout: Layout) -> dict[str, str]:
    """Environment for every Go step: caches under the testenv cache, no toolchain switch."""
    go = go_binary()
    flags = os.environ.get("GOFLAGS", "").split()
    flags = [f for f in flags if not f.startswith("-mod=")] + ["-mod=mod"]
    if not any(f.startswith("-buildvcs") for f in flags):
        flags.append("-buildvcs=false")
    return dict(
        os.environ,
        PATH=f"{Path(go).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        GOPATH=str(layout.go / "path"),
        GOMODCACHE=str(layout.go / "mod"),
        GOCACHE=str(layout.go / "build"),
        GOTOOLCHAIN="local",
        CGO_ENABLED="0",
        GOFLAGS=" ".join(flags),
    )


def is_built(layout: Layout, name: str, version: str) -> bool:
    binary = layout.bin / name
    stamp = layout.bin / f"{name}.version"
    return binary.exists() and stamp.exists() and stamp.read_text().strip() == version


def _install_binary(layout: Layout, built: Path, name: str, version: str) -> None:
    target = layout.bin / name
    partial = layout.bin / f".{name}.partial"
    shutil.copyfile(built, partial)
    partial.chmod(0o755)
    partial.rename(target)
    (layout.bin / f"{name}.version").write_text(version + "\n")


def go_install(layout: Layout, package: str, version: str, name: str, log: Path) -> None:
    """`go install package@version` (modules without replace directives)."""
    if is_built(layout, name, version):
        return
    started = time.monotonic()
    say(f"  building {name} {version} with go install (cached afterwards)")
    gobin = layout.go / "gobin" / name
    shutil.rmtree(gobin, ignore_errors=True)
    gobin.mkdir(parents=True)
    env = dict(go_env(layout), GOBIN=str(gobin))
    env["GOFLAGS"] = env["GOFLAGS"].replace("-mod=mod", "").strip()
    flags = ["-trimpath", "-ldflags", "-s -w"]
    run(
        [go_binary(), "install", *flags, f"{package}@{version}"],
        log,
        env=env,
        cwd=layout.go,
        what=f"go install {package}@{version}",
    )
    produced = list(gobin.iterdir())
    if len(produced) != 1:
        raise PartError(f"go install {package} produced {produced}")
    _install_binary(layout, produced[0], name, version)
    shutil.rmtree(gobin, ignore_errors=True)
    say(f"  built {name} in {time.monotonic() - started:.0f} s")


def module_info(layout: Layout, module: str, version: str) -> dict[str, str]:
    """Download a module into the module cache; its Dir (read-only) and GoMod paths."""
    env = go_env(layout)
    env["GOFLAGS"] = env["GOFLAGS"].replace("-mod=mod", "").strip()
    info = json.loads(
        output(
            [go_binary(), "mod", "download", "-json", f"{module}@{version}"], env=env, cwd=layout.go
        )
    )
    if info.get("Error"):
        raise PartError(f"go mod download {module}@{version}: {info['Error']}")
    return info


def wrapper_build(
    layout: Layout,
    name: str,
    go_mod: str,
    targets: dict[str, str],
    version: str,
    ldflags: str,
    log: Path,
) -> None:
    """Build packages through a throwaway module whose go.mod pins what they need.

    targets maps binary name -> package path. The wrapper lives in the cache (go.sum
    kept there too), so a warm rebuild is a no-op and a cold one downloads once.
    """
    if all(is_built(layout, binary, version) for binary in targets):
        return
    started = time.monotonic()
    say(f"  building {', '.join(targets)} {version} through a wrapper module (cached afterwards)")
    wrapper = layout.go / "wrappers" / name
    wrapper.mkdir(parents=True, exist_ok=True)
    gomod = wrapper / "go.mod"
    if not gomod.exists() or gomod.read_text() != go_mod:
        gomod.write_text(go_mod)
        (wrapper / "go.sum").unlink(missing_ok=True)
    out = wrapper / "out"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    for binary, package in targets.items():
        run(
            [
                go_binary(),
                "build",
                "-trimpath",
                "-ldflags",
                ldflags,
                "-o",
                str(out / binary),
                package,
            ],
            log,
            env=go_env(layout),
            cwd=wrapper,
            what=f"go build {package}",
        )
        _install_binary(layout, out / binary, binary, version)
    shutil.rmtree(out, ignore_errors=True)
    say(f"  built {', '.join(targets)} in {time.monotonic() - started:.0f} s")


def staging_modules(gomod_text: str) -> list[str]:
    """The k8s.io/* modules that k8s.io/kubernetes replaces with its staging folders."""
    found = re.findall(r"^\s*(k8s\.io/[\w.-]+)\s*=>\s*\./staging/", gomod_text, re.MULTILINE)
    return sorted(m for m in set(found) if not m.startswith("k8s.io/sample-"))
