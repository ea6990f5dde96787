"""Load the user's entry script and decide how ``run()`` is called.

The contract is the Azure ML inference server's:

* ``init()`` is called once per worker before traffic.
* ``run`` is called in one of three ways, chosen once at load time:

  - **text** (undecorated): ``run(raw_data)`` gets the request body as a
    ``str`` (for ``GET``, the query parameters as a JSON object string);
  - **raw** (any function decorated with ``@rawhttp``): ``run(request)``
    gets an ``AMLRequest``;
  - **object** (decorated with inference-schema's ``@input_schema``): the
    body must be a JSON object; each of ``run``'s parameters is passed by
    keyword from the key of the same name (or its default).

* A parameter named ``request_headers`` receives the request headers as
  a dict. ``run`` must take an argument besides it.
* A ``driver_module`` attribute holding a module with ``run`` is followed
  (scripts some Azure SDKs generate forward to it).

The module is imported as ``entry_module``, as Azure ML names it.
"""

from __future__ import annotations

import enum
import importlib.util
import inspect
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from modelform.runtime import compat

MODULE_NAME = "entry_module"
HEADERS_PARAM = "request_headers"


class ScriptError(Exception):
    """The entry script cannot be served; the message says why in one line."""


class InputMode(enum.Enum):
    TEXT = "text"
    RAW = "raw"
    OBJECT = "object"


@dataclass
class EntryScript:
    path: Path
    module: ModuleType
    init: Callable[[], Any]
    run: Callable[..., Any]
    mode: InputMode
    #: For TEXT and RAW: the parameter that receives the input.
    input_param: inspect.Parameter
    #: For OBJECT: every parameter but ``request_headers``, in order.
    params: tuple[inspect.Parameter, ...]
    wants_headers: bool
    is_async: bool

    def make_call(self) -> Callable[[Any, dict[str, str] | None], Any]:
        """A function ``call(value, headers)`` that invokes ``run`` the right way.

        ``value`` is the body text (TEXT), the ``AMLRequest`` (RAW) or the
        dict of keyword arguments (OBJECT); ``headers`` is only used when
        ``run`` asks for ``request_headers``.
        """
        run = self.run
        if self.mode is InputMode.OBJECT:
            if self.wants_headers:
                return lambda kwargs, headers: run(**kwargs, request_headers=headers)
            return lambda kwargs, headers: run(**kwargs)
        name = self.input_param.name
        positional = self.input_param.kind in (
            inspect.Parameter.POSITIONAL_ONLY,
            inspect.Parameter.VAR_POSITIONAL,
        )
        if positional:
            if self.wants_headers:
                return lambda value, headers: run(value, request_headers=headers)
            return lambda value, headers: run(value)
        if self.wants_headers:
            return lambda value, headers: run(**{name: value, HEADERS_PARAM: headers})
        return lambda value, headers: run(**{name: value})


def load_entry_script(path: Path) -> EntryScript:
    """Import ``path`` and analyse its ``run``; raise ScriptError when it cannot be served.

    Exceptions raised by the script's own import propagate unchanged (the
    caller logs their traceback).
    """
    compat.install()
    spec = importlib.util.spec_from_file_location(MODULE_NAME, path)
    if spec is None or spec.loader is None:
        raise ScriptError(f"cannot import entry script {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[MODULE_NAME] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(MODULE_NAME, None)
        raise
    init = getattr(module, "init", None)
    if not callable(init):
        raise ScriptError(f"entry script {path} does not define an init() function")
    run = getattr(module, "run", None)
    if not callable(run):
        raise ScriptError(f"entry script {path} does not define a run() function")
    driver = getattr(module, "driver_module", None)
    if isinstance(driver, ModuleType) and callable(getattr(driver, "run", None)):
        run = driver.run
    return analyse(path, module, init, run)


def analyse(
    path: Path, module: ModuleType, init: Callable[[], Any], run: Callable[..., Any]
) -> EntryScript:
    try:
        signature = inspect.signature(run)
    except (TypeError, ValueError) as error:
        raise ScriptError(f"cannot read the signature of run(): {error}") from None
    params = list(signature.parameters.values())
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        raise ScriptError("run() cannot accept **kwargs")
    wants_headers = any(p.name == HEADERS_PARAM for p in params)
    params = [p for p in params if p.name != HEADERS_PARAM]
    if not params:
        raise ScriptError("run() needs to accept an argument for the input data")
    raw = compat.raw_http_requested()
    decorated = is_schema_decorated(run)
    if raw and decorated:
        raise ScriptError("run() cannot be decorated with both @rawhttp and @input_schema")
    if decorated:
        mode = InputMode.OBJECT
        if any(p.kind in (p.POSITIONAL_ONLY, p.VAR_POSITIONAL) for p in params):
            raise ScriptError("a schema-decorated run() takes keyword arguments only")
    else:
        mode = InputMode.RAW if raw else InputMode.TEXT
    return EntryScript(
        path=path,
        module=module,
        init=init,
        run=run,
        mode=mode,
        input_param=params[0],
        params=tuple(params),
        wants_headers=wants_headers,
        is_async=inspect.iscoroutinefunction(inspect.unwrap(run)),
    )


def is_schema_decorated(run: Callable[..., Any]) -> bool:
    """True when inference-schema (already imported by the script) knows ``run``."""
    schema_util = sys.modules.get("inference_schema.schema_util")
    if schema_util is None:
        return False
    try:
        return bool(schema_util.is_schema_decorated(run))
    except Exception:  # an inference-schema version with another API: treat as undecorated
        return False
