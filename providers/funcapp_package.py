"""The function app a service becomes: a genuine Azure Functions Python v2
app folder, byte for byte the same for the same inputs, and its zip.

``write_app(spec, dest)`` writes::

    function_app.py       azure-functions v2 decorators; loads the entry script
                          by path and scores (funcapp_templates/scoring.py)
    host.json             version 2.0 and the extension bundle
    requirements.txt      azure-functions, then the environment's packages
    local.settings.json   FUNCTIONS_WORKER_RUNTIME, "" for every connection
                          setting and the function key, the service's env
    <entry script>        (and the rest of ``code_dir``, beside it)
    model/...             the exact model version(s) (AZUREML_MODEL_DIR)
    modelform_app.json    what it was made from: service, models, trigger

and returns its :func:`~modelform.runtime.functions.appdigest.app_digest`.
Everything written is sorted, has ``\\n`` newlines and no time stamp or
machine path, so the digest names the content. ``package_zip`` zips a
folder with fixed dates and modes, files sorted: the same folder gives the
same bytes. The app never imports modelform: it runs on Azure as published.
"""

from __future__ import annotations

import ast
import builtins
import json
import keyword
import math
import os
import shutil
import tempfile
import textwrap
import zipfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from modelform.plugin import Context, Resource
from modelform.providers import funcapp_trigger as ft
from modelform.providers import imagebuild, imagesource
from modelform.providers.imagebuild import ModelFiles
from modelform.runtime.functions.appdigest import app_digest

FORMAT = 1
MODEL_DIR = "model"
MANIFEST = "modelform_app.json"
EXTENSION_BUNDLE = {"id": "Microsoft.Azure.Functions.ExtensionBundle", "version": "[4.*, 5.0.0)"}
FUNCTION_KEY_SETTING = "MODELFORM_FUNCTION_KEY"
#: Files the app itself writes: code shipped beside the entry script may not use them.
RESERVED = (
    "function_app.py",
    "host.json",
    "requirements.txt",
    "local.settings.json",
    MANIFEST,
    MODEL_DIR,
    ".funcignore",
)
_TEMPLATE = Path(__file__).with_name("funcapp_templates") / "scoring.py"
#: JSON schema of host.json (version 2.0) from the documented reference.
HOST_SCHEMA = Path(__file__).with_name("schemas") / "host.schema.json"
_SKIP = {"__pycache__", ".git", ".modelform", ".pytest_cache", ".venv", ".mypy_cache"}
#: State files a code folder that is the project folder may hold: never shipped.
_STATE_FILES = ("modelform.state.json", "errored.modelform")
#: Zip entries' date (the earliest a zip can hold) and modes.
ZIP_DATE = (1980, 1, 1, 0, 0, 0)


class PackageError(ValueError):
    """An app that cannot be written as asked; one line for the user."""


@dataclass(frozen=True)
class AppSpec:
    """Everything one service's function app is made of.

    ``model_files``: ``(path under model/, source)`` pairs; a source folder's
    files go under that path ("" = model/ itself), a file is that path
    (:func:`model_layout` lays model versions out as Azure ML does).
    ``env`` becomes app settings in local.settings.json, except the names in
    ``secret_settings``, written as "" like the connection settings.
    ``models`` (name, version, digest) are recorded in modelform_app.json.
    ``code_dir``: the folder shipped with the entry script (its files go to
    the app's root, beside it); None ships the entry script alone.
    """

    service: str
    entry_script: Path
    trigger: Mapping[str, Any]
    model_files: tuple[tuple[str, Path], ...] = ()
    auth: str = "none"
    pip: tuple[str, ...] = ()
    python: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    secret_settings: frozenset[str] = frozenset()
    models: tuple[tuple[str, int, str], ...] = ()
    code_dir: Path | None = None
    timeout_seconds: float | None = None

    @property
    def normalized_trigger(self) -> dict[str, Any]:
        return ft.normalize(dict(self.trigger), self.auth)

    def entry_in_app(self) -> str:
        """The entry script's path in the app (relative, POSIX)."""
        entry = self.entry_script.resolve()
        if self.code_dir is not None and entry.is_relative_to(self.code_dir.resolve()):
            return entry.relative_to(self.code_dir.resolve()).as_posix()
        return entry.name


def model_layout(models: Sequence[ModelFiles]) -> tuple[tuple[str, Path], ...]:
    """``model_files`` for :class:`AppSpec` as Azure ML lays models out: one
    model's files directly in model/ (AZUREML_MODEL_DIR = model/), several
    under model/<name>/<version>/."""
    out = []
    for m in models:
        base = f"{m.name}/{m.version}" if len(models) > 1 else ""
        if Path(m.source).is_dir():
            out.append((base, Path(m.source)))
        else:
            out.append(((f"{base}/" if base else "") + Path(m.source).name, Path(m.source)))
    return tuple(out)


def spec_from_resource(
    r: Resource,
    ctx: Context,
    *,
    register_models: bool = False,
    secret_settings: Iterable[str] = (),
) -> AppSpec:
    """The app of a resolved service: its entry script and code folder, its
    models' exact versions (see :func:`imagesource.model_files` for
    ``register_models``), its environment's packages and env (the
    service's env over the environment's), trigger, auth and timeout."""
    cfg = r.config
    img = imagesource.image_spec(
        r,
        ctx,
        registry=None,
        carry_ca=False,
        base_image=imagebuild.DEFAULT_BASE_IMAGE,
        register_models=register_models,
    )
    env_name = cfg.get("environment")
    env_attrs = r.inputs.get(f"environment.{env_name}", {}) if env_name else {}
    env = {**(env_attrs.get("env") or {}), **(cfg.get("env") or {})}
    return AppSpec(
        service=r.name,
        entry_script=img.entry_script,
        trigger=dict(cfg.get("trigger") or {"kind": "http"}),
        model_files=model_layout(img.models),
        auth=str(cfg.get("auth") or "none"),
        pip=img.requirements,
        python=img.python,
        env={str(k): str(v) for k, v in env.items()},
        secret_settings=frozenset(secret_settings),
        models=tuple((m.name, m.version, m.digest) for m in img.models),
        code_dir=img.source_dir,
        timeout_seconds=cfg.get("timeout_seconds"),
    )


# -- the files ----------------------------------------------------------------
def _json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def _lit(text: str) -> str:
    """A Python string literal (JSON's escapes are Python's)."""
    return json.dumps(text)


def _timespan(seconds: float) -> str:
    """host.json's ``[d.]hh:mm:ss``, whole seconds rounded up."""
    total = max(1, math.ceil(seconds))
    days, rest = divmod(total, 86400)
    text = f"{rest // 3600:02d}:{rest % 3600 // 60:02d}:{rest % 60:02d}"
    return f"{days}.{text}" if days else text


def host_json(spec: AppSpec) -> str:
    doc: dict[str, Any] = {
        "version": "2.0",
        "extensionBundle": dict(EXTENSION_BUNDLE),
        "logging": {
            "applicationInsights": {
                "samplingSettings": {"isEnabled": True, "excludedTypes": "Request"}
            }
        },
    }
    if spec.timeout_seconds:
        doc["functionTimeout"] = _timespan(spec.timeout_seconds)
    return _json(doc)


def host_schema() -> dict[str, Any]:
    """The schema host.json files are checked against (documented keys only;
    binding extensions' sections open)."""
    schema: dict[str, Any] = json.loads(HOST_SCHEMA.read_text())
    return schema


def _requirement_name(line: str) -> str:
    name = line.strip()
    for stop in "[=<>!~;@ ":
        name = name.split(stop, 1)[0]
    return name.lower().replace("_", "-").replace(".", "-")


def requirements_txt(spec: AppSpec) -> str:
    lines = [line.strip() for line in spec.pip if line.strip()]
    if not any(_requirement_name(line) == "azure-functions" for line in lines):
        lines.insert(0, "azure-functions")
    return "".join(f"{line}\n" for line in dict.fromkeys(lines))


def connections(trigger: Mapping[str, Any]) -> list[str]:
    """App settings naming connections: AzureWebJobsStorage always (the
    Functions host keeps its own state there), and the trigger's."""
    return sorted(
        {ft.STORAGE_SETTING, *([trigger["connection"]] if "connection" in trigger else [])}
    )


def local_settings_json(spec: AppSpec) -> str:
    trigger = spec.normalized_trigger
    values: dict[str, str] = {name: "" for name in connections(trigger)}
    if ft.http_auth_level(trigger, spec.auth) == "function":
        values[FUNCTION_KEY_SETTING] = ""
    for name, value in spec.env.items():
        if name == "FUNCTIONS_WORKER_RUNTIME" and value != "python":
            raise PackageError(f"env FUNCTIONS_WORKER_RUNTIME={value}: a Python app needs python")
        values[name] = "" if name in spec.secret_settings else str(value)
    values["FUNCTIONS_WORKER_RUNTIME"] = "python"
    return _json({"IsEncrypted": False, "Values": values})


def functions(spec: AppSpec) -> list[dict[str, Any]]:
    """The app's functions: the trigger's, and (unless it is http) the HTTP one."""
    trigger = spec.normalized_trigger
    name = ft.function_name(spec.service)
    level = ft.http_auth_level(trigger, spec.auth)
    if trigger["kind"] == "http":
        return [{"name": name, "trigger": "http", "route": trigger["route"], "auth_level": level}]
    http = {
        "name": ft.http_function_name(spec.service),
        "trigger": "http",
        "route": ft.DEFAULT_ROUTE,
        "auth_level": level,
    }
    return [{"name": name, "trigger": trigger["kind"]}, http]


def manifest_json(spec: AppSpec) -> str:
    return _json(
        {
            "format": FORMAT,
            "generator": "modelform",
            "service": spec.service,
            "entry_script": spec.entry_in_app(),
            "python": spec.python,
            "models": [{"name": n, "version": v, "digest": d} for n, v, d in spec.models],
            "trigger": spec.normalized_trigger,
            "functions": functions(spec),
        }
    )


def _template_names() -> set[str]:
    """Names the scoring template defines or imports at its top level."""
    tree = ast.parse(_TEMPLATE.read_text())
    names = {"app", "SCORER"}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names |= {(a.asname or a.name).split(".", 1)[0] for a in node.names}
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {t.id for t in targets if isinstance(t, ast.Name)}
    return names


def _python_name(name: str) -> str:
    """The def name of a function: its function name, unless that is a
    keyword, a builtin or a name of the app's own (a service called "app"
    or "json"); then with "_" after it."""
    taken = _template_names() | set(dir(builtins))
    while keyword.iskeyword(name) or name in taken:
        name += "_"
    return name


def _decorator(decorator: str, /, **args: str) -> list[str]:
    """``@app.decorator(k=v, ...)``: on one line when it fits, else one argument a line."""
    line = f"@app.{decorator}({', '.join(f'{k}={v}' for k, v in args.items())})"
    if len(line) <= 99:
        return [line]
    return [f"@app.{decorator}(", *(f"    {k}={v}," for k, v in args.items()), ")"]


def _trigger_function(spec: AppSpec, t: dict[str, Any]) -> list[str]:
    name = ft.function_name(spec.service)
    out = _decorator("function_name", name=_lit(name))
    output = None
    if t["kind"] == "blob":
        container, conn = str(t["container"]), _lit(str(t["connection"]))
        out += _decorator(
            "blob_trigger",
            arg_name='"blob"',
            path=_lit(f"{container}/{t['input']}"),
            connection=conn,
        )
        if t.get("output"):
            output = f"{container}/{t['output']}"
            out += _decorator(
                "blob_output", arg_name='"output"', path=_lit(output), connection=conn
            )
        param, method = "blob: func.InputStream", "blob"
    elif t["kind"] == "queue":
        conn = _lit(str(t["connection"]))
        out += _decorator(
            "queue_trigger", arg_name='"msg"', queue_name=_lit(str(t["queue"])), connection=conn
        )
        if t.get("output_queue"):
            output = str(t["output_queue"])
            out += _decorator(
                "queue_output", arg_name='"output"', queue_name=_lit(output), connection=conn
            )
        param, method = "msg: func.QueueMessage", "queue"
    else:
        conn = _lit(str(t["connection"]))
        if "topic" in t:
            out += _decorator(
                "service_bus_topic_trigger",
                arg_name='"msg"',
                connection=conn,
                topic_name=_lit(str(t["topic"])),
                subscription_name=_lit(str(t["subscription"])),
            )
        else:
            out += _decorator(
                "service_bus_queue_trigger",
                arg_name='"msg"',
                connection=conn,
                queue_name=_lit(str(t["queue"])),
            )
        if t.get("output_queue"):
            output = str(t["output_queue"])
            out += _decorator(
                "service_bus_queue_output",
                arg_name='"output"',
                connection=conn,
                queue_name=_lit(output),
            )
        param, method = "msg: func.ServiceBusMessage", "servicebus"
    arg = param.split(":", 1)[0]
    if output:
        out += [
            f"def {_python_name(name)}({param}, output: func.Out[str]) -> None:",
            f"    output.set(SCORER.{method}({arg}))",
        ]
    else:
        out += [f"def {_python_name(name)}({param}) -> None:", f"    SCORER.{method}({arg})"]
    return out


def _http_function(name: str, route: str, level: str) -> list[str]:
    return [
        *_decorator("function_name", name=_lit(name)),
        *_decorator(
            "route",
            route=_lit(route),
            methods='["GET", "POST"]',
            auth_level=f"func.AuthLevel.{level.upper()}",
        ),
        f"def {_python_name(name)}(req: func.HttpRequest) -> func.HttpResponse:",
        "    return SCORER.http(req)",
    ]


def _docstring(spec: AppSpec, t: dict[str, Any]) -> list[str]:
    what = {
        "http": "answers HTTP requests",
        "blob": f"scores each blob {t.get('container')}/{t.get('input')}"
        + (f" into {t.get('container')}/{t['output']}" if t.get("output") else ""),
        "queue": f"scores each message of queue {t.get('queue')}"
        + (f" into queue {t['output_queue']}" if t.get("output_queue") else ""),
        "servicebus": "scores each Service Bus message of "
        + (
            f"topic {t.get('topic')}/{t.get('subscription')}"
            if "topic" in t
            else f"queue {t.get('queue')}"
        )
        + (f" into queue {t['output_queue']}" if t.get("output_queue") else ""),
    }[t["kind"]]
    routes = ", ".join(
        f"/api/{f['route']} ({f['name']}, auth level {f['auth_level']})"
        for f in functions(spec)
        if f["trigger"] == "http"
    )
    paragraphs = [
        f"Function app of service {spec.service}: {what}.",
        f"HTTP: {routes}, answered like modelform's /score.",
        f"The entry script {spec.entry_in_app()} is Azure ML's: init() once, then run() for each "
        f"input; AZUREML_MODEL_DIR is {MODEL_DIR}/ unless set. A @rawhttp run() gets an "
        "AMLRequest (see its docstring: get_data(), blob_name, message_id).",
    ]
    text = "\n\n".join(textwrap.fill(p, 79, break_long_words=False) for p in paragraphs)
    text = text.replace("\\", "\\\\").replace('"""', '\\"\\"\\"')
    return [
        f"# Generated by modelform from service {spec.service}: edit the project, not this file.",
        *f'"""{text}\n"""'.splitlines(),
    ]


def function_app_py(spec: AppSpec) -> str:
    t = spec.normalized_trigger
    level = ft.http_auth_level(t, spec.auth)
    base = _TEMPLATE.read_text().splitlines()
    while base and (not base[0].strip() or base[0].startswith("#")):
        base.pop(0)  # the template's own header
    lines = [*_docstring(spec, t), *base, "", ""]
    lines += [
        f"app = func.FunctionApp(http_auth_level=func.AuthLevel.{level.upper()})",
        f"SCORER = Scorer(APP_DIR / {_lit(spec.entry_in_app())}, APP_DIR / {_lit(MODEL_DIR)})",
        "SCORER.start()",
    ]
    if t["kind"] == "http":
        funcs = [_http_function(ft.function_name(spec.service), str(t["route"]), level)]
    else:
        funcs = [
            _trigger_function(spec, t),
            _http_function(ft.http_function_name(spec.service), ft.DEFAULT_ROUTE, level),
        ]
    for f in funcs:
        lines += ["", "", *f]
    return "\n".join(lines) + "\n"


# -- copying --------------------------------------------------------------------
def _walk(root: Path) -> Iterator[tuple[Path, str]]:
    """(file, relative POSIX path) under ``root``, sorted, caches skipped."""
    for folder, dirs, files in os.walk(root, followlinks=True):
        dirs[:] = sorted(d for d in dirs if d not in _SKIP)
        for name in sorted(files):
            state = name.startswith(_STATE_FILES) or ".tfstate" in name
            if not name.endswith(".pyc") and not state:
                full = Path(folder, name)
                yield full, full.relative_to(root).as_posix()


def _safe(rel: str, what: str) -> str:
    p = PurePosixPath(rel)
    if p.is_absolute() or ".." in p.parts:
        raise PackageError(f"{what} {rel!r}: a path inside the app is relative, without ..")
    return p.as_posix() if rel else ""


def _sources(spec: AppSpec) -> list[tuple[str, Path]]:
    """(path in the app, file) of the code and the model files."""
    out: list[tuple[str, Path]] = []
    entry = spec.entry_in_app()
    if spec.code_dir is not None:
        out += [(rel, full) for full, rel in _walk(spec.code_dir)]
    if entry not in {rel for rel, _ in out}:
        out.append((entry, spec.entry_script))
    for rel, _ in out:
        if rel.split("/", 1)[0] in RESERVED:
            raise PackageError(f"{rel} in the service's code would replace the app's own {rel}")
    for rel, source in spec.model_files:
        base = _safe(rel, "model file")
        if Path(source).is_dir():
            out += [
                (f"{MODEL_DIR}/{base}/{r}" if base else f"{MODEL_DIR}/{r}", f)
                for f, r in _walk(Path(source))
            ]
        elif not base:
            raise PackageError(f"model file {source}: a file needs its name under model/")
        else:
            out.append((f"{MODEL_DIR}/{base}", Path(source)))
    seen: set[str] = set()
    for rel, _ in out:
        if rel in seen:
            raise PackageError(f"two files would be {rel} in the app")
        seen.add(rel)
    return out


def _write(root: Path, rel: str, data: str | Path) -> None:
    target = root / rel
    target.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        target.write_bytes(data.encode("utf-8"))
    else:
        shutil.copyfile(data, target)
    target.chmod(0o644)


def app_files(spec: AppSpec) -> Iterable[tuple[str, str | Path]]:
    """Every file of the app: (relative path, text or source file)."""
    yield "function_app.py", function_app_py(spec)
    yield "host.json", host_json(spec)
    yield "requirements.txt", requirements_txt(spec)
    yield "local.settings.json", local_settings_json(spec)
    yield MANIFEST, manifest_json(spec)
    yield from _sources(spec)


def write_app(spec: AppSpec, dest_dir: Path | str) -> str:
    """Write the app to ``dest_dir`` (replaced whole: it must be missing,
    empty or an app written before) and return its digest."""
    dest = Path(dest_dir)
    if dest.exists() and (
        not dest.is_dir() or (any(dest.iterdir()) and not (dest / MANIFEST).is_file())
    ):
        raise PackageError(f"{dest} exists and holds no function app: choose another folder")
    dest.parent.mkdir(parents=True, exist_ok=True)
    files = list(app_files(spec))  # every error before anything is written
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        for rel, data in files:
            _write(tmp, rel, data)
        tmp.chmod(0o755)
        old = None
        if dest.exists():
            old = dest.with_name(f".{dest.name}.old-{os.getpid()}")
            os.replace(dest, old)
        os.replace(tmp, dest)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return app_digest(dest)


def package_zip(app_dir: Path | str, out_path: Path | str) -> Path:
    """Zip ``app_dir`` to ``out_path`` (the files the digest covers, sorted;
    fixed dates and modes, so the same folder gives the same bytes): what
    ``az functionapp deployment source config-zip`` or the Functions core
    tools take."""
    from modelform.runtime.functions.appdigest import app_files as digest_files

    root, out = Path(app_dir), Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
    try:
        with os.fdopen(fd, "wb") as raw, zipfile.ZipFile(raw, "w") as z:
            for rel in digest_files(root):
                info = zipfile.ZipInfo(rel, date_time=ZIP_DATE)
                info.create_system = 3  # unix, whatever the machine
                info.external_attr = 0o100644 << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                z.writestr(info, (root / rel).read_bytes(), compresslevel=6)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out
