"""The image builder: one container image per service, on the modelform runtime.

Shared by every target that runs images (container, kubernetes); it imports
no provider. An :class:`ImageSpec` says what goes in; :func:`build` turns
it into an image on a Docker Engine, streaming the build output.

Layers, in this order, so that each one is rebuilt only when it or one
before it changes::

    FROM base image
    CA bundle            (carry_ca: lets pip through TLS-intercepting proxies)
    venv + packages      (the requirements file only: score.py or a model never
                          reinstall packages)
    runtime packages     (uvicorn, httptools, orjson, uvloop)
    extra packages       (only a spec with ``extra_requirements``: what its
                          ``command`` needs beside the runtime, e.g. the
                          functions host's azure-functions and storage clients)
    runtime code         (modelform/runtime, without the engine)
    models               (/var/azureml-app/azureml-models/<name>/<version>/)
    user code            (/var/azureml-app/)

An image is tagged twice: ``<repo>:sha256-<digest>`` from the content
digest of its inputs (so an unchanged service finds its image and never
rebuilds) and ``<repo>:<N>``, a version number that grows by one per new
digest, as in the classic workflow (``diabetes:1``, ``diabetes:2``).

Given a ``sleep`` (the provider context's), every wait of a build or a push
goes through it, so Ctrl-C stops waiting at once: the Docker stream is read
by a helper thread, and an abandoned build ends when modelform exits and
its connection to the engine closes (nothing is tagged with a version).
"""

from __future__ import annotations

import importlib.util
import io
import os
import queue
import re
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import IO, Any

import yaml

from modelform.engine.digests import digest_json, digest_path
from modelform.plugin import ProviderError

#: How a caller waits: the provider context's ``sleep`` (raises Cancelled).
Sleep = Callable[[float], None]

#: Bump when the Dockerfile's shape changes: every image digest changes with it.
LAYOUT = 1
APP_DIR = "/var/azureml-app"
MODELS_DIR = f"{APP_DIR}/azureml-models"
VENV = "/opt/venv"
RUNTIME_LIB = "/opt/modelform/lib"
CA_PATH = "/etc/modelform/ca.crt"
#: The port the runtime listens on inside every image (the Azure ML server's).
CONTAINER_PORT = 5001
DEFAULT_BASE_IMAGE = "modelform/python:3.11-bookworm"
HOST_CA_CANDIDATES = (
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
)
RUNTIME_PACKAGES = {"uvicorn": ">=0.30", "httptools": ">=0.6", "orjson": ">=3.9", "uvloop": ""}
LABEL_DIGEST = "modelform.image_digest"
_SKIP = {"__pycache__", ".git", ".modelform", ".pytest_cache", ".venv"}
_PIP = "--no-cache-dir --disable-pip-version-check --progress-bar off"


@dataclass(frozen=True)
class ModelFiles:
    """One model version: ``source`` is its store folder (or, before it is
    registered, the project's model file or folder, whose content is the same)."""

    name: str
    version: int
    digest: str
    source: Path


@dataclass(frozen=True)
class ImageSpec:
    """Everything one service's image is made of."""

    repository: str
    base_image: str
    requirements: tuple[str, ...]
    source_dir: Path
    entry_script: Path
    code_digest: str
    python: str | None = None
    models: tuple[ModelFiles, ...] = ()
    ca_bundle: Path | None = None
    #: What the container runs instead of the scoring runtime (argv in the
    #: image; arguments given at ``docker run`` are appended). Empty: the runtime.
    command: tuple[str, ...] = ()
    #: pip requirements ``command`` needs beside the runtime's, installed in a
    #: layer of their own after the runtime's packages (so a model or code
    #: change never reinstalls them).
    extra_requirements: tuple[str, ...] = ()

    def env_digest(self) -> str:
        """Digest of what the package layer is built from."""
        return digest_json(
            {"base": self.base_image, "python": self.python, "pip": list(self.requirements)}
        )

    def digest(self) -> str:
        """Content digest of every input; the CA bundle only serves the build.
        ``command`` and ``extra_requirements`` count only when set, so the
        images of specs without them keep the digests they always had."""
        doc: dict[str, Any] = {
            "layout": LAYOUT, "env": self.env_digest(), "runtime": runtime_digest(),
            "models": [[m.name, m.version, m.digest] for m in self.models],
            "code": self.code_digest, "entry": self.entry_in_image(),
        }  # fmt: skip
        if self.command:
            doc["command"] = list(self.command)
        if self.extra_requirements:
            doc["extra_pip"] = list(self.extra_requirements)
        return digest_json(doc)

    def digest_tag(self) -> str:
        return "sha256-" + self.digest().split(":", 1)[1][:16]

    def entry_in_image(self) -> str:
        if self.entry_script.is_relative_to(self.source_dir):
            return f"{APP_DIR}/{self.entry_script.relative_to(self.source_dir).as_posix()}"
        return f"{APP_DIR}/{self.entry_script.name}"

    def model_dir(self) -> str | None:
        """AZUREML_MODEL_DIR as Azure ML lays it out: one model → its version
        folder; several → the folder holding ``<name>/<version>/``."""
        if len(self.models) == 1:
            return f"{MODELS_DIR}/{self.models[0].name}/{self.models[0].version}"
        return MODELS_DIR if self.models else None

    def entrypoint(self) -> list[str]:
        if self.command:
            return list(self.command)
        argv = [f"{VENV}/bin/python", "-m", "modelform.runtime"]
        argv += ["--entry-script", self.entry_in_image(), "--app-root", APP_DIR]
        if self.model_dir():
            argv += ["--model-dir", str(self.model_dir())]
        return argv + ["--host", "0.0.0.0", "--port", str(CONTAINER_PORT)]


@dataclass
class Built:
    """The image a spec resolved to."""

    ref: str  # <repo>:<N>
    digest_ref: str  # <repo>:sha256-<digest>
    image_id: str
    built: bool
    seconds: float = 0.0
    cached_steps: list[str] = field(default_factory=list)
    #: ``<repo>@sha256:…`` for each registry an earlier push put it in (an
    #: image found again; one just built has none).
    repo_digests: tuple[str, ...] = ()


# -- inputs -------------------------------------------------------------------


def requirements_of(env: dict[str, Any], project_dir: Path) -> tuple[str, ...]:
    """pip requirement lines of an environment (its ``pip`` list, or its
    conda file's dependencies installed with pip: ``name=1.2`` → ``name==1.2``;
    python and pip themselves are the base image's)."""
    if env.get("pip"):
        return tuple(str(p) for p in env["pip"])
    if not env.get("conda_file"):
        return ()
    data = yaml.safe_load((project_dir / env["conda_file"]).read_text()) or {}
    out: list[str] = []
    for dep in data.get("dependencies") or []:
        if isinstance(dep, dict):
            out += [str(p) for p in dep.get("pip") or []]
        elif (req := _conda_to_pip(str(dep))) is not None:
            out.append(req)
    return tuple(out)


def _conda_to_pip(spec: str) -> str | None:
    """``numpy=1.26`` → ``numpy==1.26.*`` (conda's meaning); python and pip
    themselves come with the base image."""
    m = re.match(r"^\s*([A-Za-z0-9_.\-]+)\s*(.*?)\s*$", spec.split("::", 1)[-1])
    if m is None or m.group(1) in ("python", "pip"):
        return None
    name, rest = m.groups()
    if rest and rest[0] not in "=<>!~":
        rest = "=" + rest.split()[0]  # "numpy 1.26" is "numpy=1.26"
    if rest.startswith("=") and not rest.startswith("=="):
        version = rest[1:].split("=")[0]  # name=1.2=build_string
        rest = "==" + (version if version.endswith("*") else version + ".*")
    return name + rest


def host_ca_bundle(carry_ca: bool | str | None) -> Path | None:
    """The CA bundle to carry into builds: a path, the host's (default), or none."""
    if carry_ca is False:
        return None
    if isinstance(carry_ca, str):
        path = Path(carry_ca).expanduser()
        if not path.is_file():
            raise ValueError(f"carry_ca: no CA bundle file at {carry_ca}")
        return path
    for cand in (os.environ.get("SSL_CERT_FILE"), *HOST_CA_CANDIDATES):
        if cand and Path(cand).is_file():
            return Path(cand)
    if carry_ca is True:
        raise ValueError("carry_ca: true, but this host has no CA bundle in a known place")
    return None


def pinned(packages: dict[str, str]) -> list[str]:
    """pip requirements of ``packages`` (name → floor), each pinned to the
    version this machine runs when it is installed, else its floor."""
    out = []
    for name, floor in packages.items():
        try:
            out.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            out.append(f"{name}{floor}")
    return out


def runtime_requirements() -> list[str]:
    """The runtime's packages, pinned to the versions modelform runs with here."""
    return pinned(RUNTIME_PACKAGES)


def _runtime_dir() -> Path:
    spec = importlib.util.find_spec("modelform.runtime")
    assert spec is not None and spec.origin is not None
    return Path(spec.origin).parent


_runtime_digest: list[str] = []


def runtime_digest() -> str:
    if not _runtime_digest:
        _runtime_digest.append(digest_json([digest_path(_runtime_dir()), runtime_requirements()]))
    return _runtime_digest[0]


# -- Dockerfile and context ---------------------------------------------------


def _ca_env(spec: ImageSpec) -> str:
    if spec.ca_bundle is None:
        return ""
    return f"PIP_CERT={CA_PATH} SSL_CERT_FILE={CA_PATH} REQUESTS_CA_BUNDLE={CA_PATH} "


def _python_check(want: str) -> str:
    # The schema allows only digits and dots in ``want``; no single quotes inside.
    code = (
        f'import sys; w="{want}"; h=sys.version.split()[0]; '
        'sys.exit(0 if h==w or h.startswith(w+".") else '
        '"the environment wants Python "+w+"; the base image has Python "+h)'
    )
    return f"python3 -c '{code}'"


def dockerfile(spec: ImageSpec) -> str:
    ca = _ca_env(spec)
    venv = [f"python3 -m venv {VENV}"]
    if spec.python:
        venv.insert(0, _python_check(spec.python))
    if spec.requirements:
        venv.append(f"{ca}{VENV}/bin/pip install {_PIP} -r /opt/modelform/requirements.txt")
    lines = [f"FROM {spec.base_image}"]
    if spec.ca_bundle is not None:
        lines.append(f"COPY ca.crt {CA_PATH}")
    lines += [
        "COPY requirements.txt /opt/modelform/requirements.txt",
        "RUN " + " && ".join(venv),
        "COPY runtime-requirements.txt /opt/modelform/runtime-requirements.txt",
        f"RUN {ca}{VENV}/bin/pip install {_PIP} -r /opt/modelform/runtime-requirements.txt"
        f" && {VENV}/bin/python -c 'import site; open(site.getsitepackages()[0]"
        f'+"/modelform-runtime.pth", "w").write("{RUNTIME_LIB}\\n")\'',
    ]
    if spec.extra_requirements:
        lines += [
            "COPY extra-requirements.txt /opt/modelform/extra-requirements.txt",
            f"RUN {ca}{VENV}/bin/pip install {_PIP} -r /opt/modelform/extra-requirements.txt",
        ]
    lines += [
        f"COPY modelform/ {RUNTIME_LIB}/modelform/",
        f"WORKDIR {APP_DIR}",
        "ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1",
        f"EXPOSE {CONTAINER_PORT}",
    ]
    if spec.models:
        lines.append(f"COPY models/ {MODELS_DIR}/")
    lines += [
        f"COPY app/ {APP_DIR}/",
        "ENTRYPOINT [" + ", ".join(f'"{a}"' for a in spec.entrypoint()) + "]",
    ]
    return "\n".join(lines) + "\n"


def _walk(root: Path) -> Iterable[tuple[Path, str]]:
    """(file, relative posix path) under ``root``, sorted, caches skipped."""
    if root.is_file():
        yield root, root.name
        return
    for dirpath, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in _SKIP)
        for name in sorted(files):
            if not name.endswith(".pyc"):
                full = Path(dirpath, name)
                yield full, full.relative_to(root).as_posix()


def _add(tar: tarfile.TarFile, name: str, data: bytes | Path) -> None:
    """Fixed owners and times (TarInfo's defaults): only content and the
    executable bit decide Docker's layer cache."""
    info = tarfile.TarInfo(name)
    info.mtime, info.mode = 946684800, 0o644
    if isinstance(data, bytes):
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
        return
    info.mode = 0o755 if os.access(data, os.X_OK) else 0o644
    info.size = data.stat().st_size
    with open(data, "rb") as f:
        tar.addfile(info, f)


def write_context(spec: ImageSpec, out: IO[bytes]) -> None:
    with tarfile.open(fileobj=out, mode="w") as tar:
        _add(tar, "Dockerfile", dockerfile(spec).encode())
        if spec.ca_bundle is not None:
            _add(tar, "ca.crt", spec.ca_bundle)
        _add(tar, "requirements.txt", "".join(f"{r}\n" for r in spec.requirements).encode())
        runtime_reqs = "".join(f"{r}\n" for r in runtime_requirements())
        _add(tar, "runtime-requirements.txt", runtime_reqs.encode())
        if spec.extra_requirements:
            extra = "".join(f"{r}\n" for r in spec.extra_requirements)
            _add(tar, "extra-requirements.txt", extra.encode())
        _add(tar, "modelform/__init__.py", b'"""modelform\'s scoring runtime (image copy)."""\n')
        for full, rel in _walk(_runtime_dir()):
            _add(tar, f"modelform/runtime/{rel}", full)
        for m in spec.models:
            for full, rel in _walk(m.source):
                _add(tar, f"models/{m.name}/{m.version}/{rel}", full)
        for full, rel in _walk(spec.source_dir):
            _add(tar, f"app/{rel}", full)
        if not spec.entry_script.is_relative_to(spec.source_dir):
            _add(tar, f"app/{spec.entry_script.name}", spec.entry_script)


# -- building -----------------------------------------------------------------

_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()


def _host_lock(client: Any) -> threading.Lock:
    """One build at a time per Docker Engine: services sharing an environment
    then build its layer once, and the machine is not flooded."""
    key = str(getattr(client.api, "base_url", ""))
    with _locks_guard:
        return _locks.setdefault(key, threading.Lock())


def _acquire(lock: threading.Lock, sleep: Sleep | None) -> None:
    """Take ``lock``, waiting through ``sleep`` (another service may be
    building for minutes)."""
    if sleep is None:
        lock.acquire()
        return
    while not lock.acquire(blocking=False):
        sleep(0.05)


class _Raised:
    def __init__(self, error: BaseException) -> None:
        self.error = error


def _follow(start: Callable[[], Iterable[dict[str, Any]]], sleep: Sleep | None
            ) -> Iterator[dict[str, Any]]:  # fmt: skip
    """The chunks of the Docker stream ``start()`` opens. With ``sleep``, a
    helper thread (a daemon: it never holds modelform up) reads them, and
    waiting for the next one goes through ``sleep``, which raises Cancelled
    when the user interrupts."""
    if sleep is None:
        yield from start()
        return
    chunks: queue.SimpleQueue[Any] = queue.SimpleQueue()
    end = object()

    def read() -> None:
        try:
            for chunk in start():
                chunks.put(chunk)
        except BaseException as e:  # noqa: BLE001 - handed to the waiting thread
            chunks.put(_Raised(e))
        finally:
            chunks.put(end)

    threading.Thread(target=read, name="docker-stream", daemon=True).start()
    while True:
        try:
            item = chunks.get_nowait()
        except queue.Empty:
            sleep(0.05)
            continue
        if item is end:
            return
        if isinstance(item, _Raised):
            raise item.error
        yield item


def _versions(client: Any, repo: str) -> dict[str, int]:
    """image id → its version number, for every ``<repo>:<N>`` image."""
    out: dict[str, int] = {}
    for img in client.images.list(name=repo):
        for tag in img.tags:
            r, _, t = tag.rpartition(":")
            if r == repo and t.isdigit():
                out[img.id] = max(out.get(img.id, 0), int(t))
    return out


def find(client: Any, spec: ImageSpec, *, look_only: bool = False) -> Built | None:
    """The image already built from exactly these inputs, if any. It gets a
    version tag if it lost it, unless ``look_only`` (then its ``ref`` may be
    empty): planning never changes the engine."""
    import docker.errors

    digest_ref = f"{spec.repository}:{spec.digest_tag()}"
    try:
        img = client.images.get(digest_ref)
    except docker.errors.ImageNotFound:
        return None
    if img.labels.get(LABEL_DIGEST) != spec.digest():
        return None
    ref = _version_ref(client, spec.repository, img, assign=not look_only)
    digests = tuple(img.attrs.get("RepoDigests") or ())
    return Built(ref, digest_ref, img.id, built=False, repo_digests=digests)


def _version_ref(client: Any, repo: str, img: Any, assign: bool = True) -> str:
    versions = _versions(client, repo)
    if img.id not in versions and not assign:
        return ""
    if img.id not in versions:
        versions[img.id] = max(versions.values(), default=0) + 1
        img.tag(repo, str(versions[img.id]))
    return f"{repo}:{versions[img.id]}"


class _Steps:
    """Follows the legacy builder's stream: lines per step, for the failing
    step's log and to tell cached steps from rebuilt ones."""

    def __init__(self, log: Callable[[str], None]) -> None:
        self.log = log
        self.step = ""
        self.lines: list[str] = []
        self.cached: list[str] = []
        self.partial = ""

    def feed(self, text: str) -> None:
        self.partial += text
        *done, self.partial = self.partial.split("\n")
        for line in done:
            self.line(_ANSI.sub("", line).rstrip("\r"))

    def line(self, line: str) -> None:
        if not line.strip() or line.startswith(_QUIET):
            return
        if line.startswith("Step ") and " : " in line:
            self.step, self.lines = line, []
        else:
            self.lines.append(line)
            if "Using cache" in line and self.step:
                self.cached.append(self.step)
        self.log(line)


_QUIET = ("Removing intermediate container", " ---> Running in ")


def build(
    client: Any,
    spec: ImageSpec,
    log: Callable[[str], None] = lambda line: None,
    *,
    nocache: bool = False,
    sleep: Sleep | None = None,
) -> Built:
    """The image for ``spec``: found by its digest, else built and versioned.

    A failed build raises :class:`ProviderError` whose log is the failing
    step's output; nothing is tagged then. With ``sleep``, waiting (for
    another build on the engine, for build output) goes through it.
    """
    import docker.errors

    # An image built before and still tagged needs no lock: lookups of many
    # services then run side by side instead of one after another.
    found = None if nocache else find(client, spec, look_only=True)
    if found is not None and found.ref:
        log(f"image {found.ref} ({spec.digest_tag()}) exists: no build")
        return found
    lock = _host_lock(client)
    _acquire(lock, sleep)
    try:
        found = None if nocache else find(client, spec)
        if found is not None:
            log(f"image {found.ref} ({spec.digest_tag()}) exists: no build")
            return found
        digest_ref = f"{spec.repository}:{spec.digest_tag()}"
        log(f"building {digest_ref} from {spec.base_image}")
        steps = _Steps(log)
        t0 = time.monotonic()
        with tempfile.TemporaryFile() as ctx:
            write_context(spec, ctx)
            ctx.seek(0)

            def start() -> Iterable[dict[str, Any]]:
                stream: Iterable[dict[str, Any]] = client.api.build(
                    fileobj=ctx, custom_context=True, tag=digest_ref, rm=True, forcerm=True,
                    decode=True, nocache=nocache, buildargs=_proxy_args(),
                    labels={LABEL_DIGEST: spec.digest(), "modelform.env_digest": spec.env_digest()},
                )  # fmt: skip
                return stream

            try:
                image_id = ""
                for chunk in _follow(start, sleep):
                    if "stream" in chunk:
                        steps.feed(str(chunk["stream"]))
                    elif "error" in chunk:
                        steps.feed("\n")
                        raise _failed(steps, str(chunk["error"]))
                    elif isinstance(chunk.get("aux"), dict) and "ID" in chunk["aux"]:
                        image_id = str(chunk["aux"]["ID"])
            except docker.errors.APIError as e:
                raise _failed(steps, str(e.explanation or e)) from None
        steps.feed("\n")
        img = client.images.get(image_id or digest_ref)
        seconds = time.monotonic() - t0
        ref = _version_ref(client, spec.repository, img)
        log(f"built {ref} ({spec.digest_tag()}) in {seconds:.1f} s")
        return Built(ref, digest_ref, img.id, True, seconds, steps.cached)
    finally:
        lock.release()


def _failed(steps: _Steps, error: str) -> ProviderError:
    """One line naming the step and what it does; its output as the log."""
    error = _ANSI.sub("", error).strip()
    code = re.search(r"returned a non-zero code: (\d+)", error)
    short_error = f"exit code {code.group(1)}" if code else error.splitlines()[0][:300]
    step = steps.step.split(" : ", 1)[0].lower() if steps.step else ""
    where = f" at {step} ({_what(steps.step)})" if step else ""
    tail = "\n".join([steps.step, *steps.lines[-60:]] if steps.step else steps.lines[-60:])
    return ProviderError(f"image build failed{where}: {short_error}", log=tail)


def _what(step: str) -> str:
    if "runtime-requirements.txt" in step and "RUN" in step:
        return "installing the runtime's packages"
    if "extra-requirements.txt" in step and "RUN" in step:
        return "installing the packages the image's command needs"
    if f"-m venv {VENV}" in step:
        return "creating the venv and installing the environment's packages"
    if " FROM " in f" {step.split(' : ', 1)[-1]}":
        return "getting the base image"
    return step.split(" : ", 1)[-1][:80]


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _proxy_args() -> dict[str, str]:
    """Proxy settings of this host, passed as Docker's predefined build args
    (not cached, not kept in the image)."""
    names = ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy")
    return {n: os.environ[n] for n in names if os.environ.get(n)}


def push(
    client: Any, ref: str, auth: dict[str, str] | None, log: Callable[[str], None],
    sleep: Sleep | None = None,
) -> str | None:  # fmt: skip
    """Push ``<repo>:<tag>``; the credentials are never logged. Returns the
    manifest digest the registry gave (``sha256:...``), which names exactly
    this image there (``<repo>@<digest>``), or None if it said none."""
    import docker.errors

    repo, _, tag = ref.rpartition(":")
    log(f"pushing {ref}")

    def start() -> Iterable[dict[str, Any]]:
        stream: Iterable[dict[str, Any]] = client.api.push(
            repo, tag=tag, stream=True, decode=True, auth_config=auth
        )
        return stream

    digest: str | None = None
    try:
        for chunk in _follow(start, sleep):
            if "error" in chunk:
                raise ProviderError(f"push of {ref} failed: {chunk['error']}")
            if chunk.get("status") in ("Pushed", "Layer already exists"):
                log(f"{chunk.get('id', '')}: {chunk['status']}")
            aux = chunk.get("aux")
            if isinstance(aux, dict) and str(aux.get("Digest", "")).startswith("sha256:"):
                digest = str(aux["Digest"])
    except docker.errors.APIError as e:
        raise ProviderError(f"push of {ref} failed: {e.explanation or e}") from None
    log(f"pushed {ref}" + (f" ({digest})" if digest else ""))
    return digest


def already_pushed(built: Built, timeout: float = 5.0) -> str | None:
    """The registry digest of ``built`` when an earlier push put it there and
    the registry still serves it (a HEAD of its manifest); else None, and the
    caller pushes. Saves a push (a stream through the Docker Engine) per
    service when nothing changed; a registry that wants credentials for the
    HEAD answers 401 and the image is simply pushed."""
    import urllib.request

    repo = built.ref.rpartition(":")[0]
    digest = next(
        (d.split("@", 1)[1] for d in built.repo_digests if d.split("@", 1)[0] == repo), None
    )
    host, _, path = repo.partition("/")
    if digest is None or not path or ("." not in host and ":" not in host):
        return None
    loopback = host.split(":")[0] in ("127.0.0.1", "localhost", "[::1]")
    url = f"{'http' if loopback else 'https'}://{host}/v2/{path}/manifests/{digest}"
    accept = ", ".join((
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
    ))  # fmt: skip
    req = urllib.request.Request(url, method="HEAD", headers={"Accept": accept})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            ok = r.status == 200 and r.headers.get("Docker-Content-Digest", digest) == digest
    except (OSError, ValueError):
        return None
    return digest if ok else None
