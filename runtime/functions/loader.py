"""Loading a v2 app: import ``function_app.py`` and read the library's own metadata.

Like the Python worker, the host imports ``function_app.py`` with the app
folder first on ``sys.path`` and the folder as the working directory,
finds the one ``FunctionApp`` (any ``FunctionRegister``: ``AsgiFunctionApp``
and ``WsgiFunctionApp`` too), and for each of ``get_functions()`` reads
``get_function_json()`` for its bindings. The parameter checks follow the
worker's ``Registry.add_function``: every parameter is a binding (or
``context``), outputs are ``func.Out[...]``, ``$return`` is an output
binding, and a parameter annotated ``str``/``bytes`` gets the raw value
(the worker's "generic" binding) instead of the rich type.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import os
import sys
import traceback
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCRIPT_FILE = "function_app.py"
TRIGGER_TYPES = ("httpTrigger", "blobTrigger", "queueTrigger", "serviceBusTrigger")


class AppLoadError(Exception):
    """The app cannot be loaded; ``str()`` is one line, ``detail`` a traceback if any."""

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.detail = detail


@dataclass(frozen=True)
class Param:
    """One parameter of the user's function and the binding it takes."""

    name: str
    binding: dict[str, Any]
    pytype: Any  # the annotation (inner type for Out[...]); None when not annotated
    is_out: bool

    @property
    def raw(self) -> bool:
        """Annotated ``str``/``bytes``: the worker passes the value, not a rich object."""
        return self.pytype in (str, bytes)


@dataclass
class FunctionSpec:
    """A function as the host drives it."""

    name: str
    func: Any
    trigger: dict[str, Any]
    bindings: list[dict[str, Any]]
    params: list[Param]
    return_binding: dict[str, Any] | None
    requires_context: bool
    is_async: bool

    @property
    def trigger_type(self) -> str:
        return str(self.trigger["type"])

    def outputs(self) -> list[Param]:
        return [param for param in self.params if param.is_out]

    def describe(self) -> dict[str, Any]:
        """The trigger in a few fields, for logs and the status answer."""
        info: dict[str, Any] = {"name": self.name, "trigger": self.trigger_type}
        for key in ("route", "authLevel", "methods", "path", "queueName", "topicName"):
            if self.trigger.get(key) is not None:
                info[key] = self.trigger[key]
        if self.trigger.get("subscriptionName"):
            info["subscriptionName"] = self.trigger["subscriptionName"]
        return info


def import_app(app_dir: Path) -> Any:
    """Import ``function_app.py`` from ``app_dir`` and return its FunctionApp."""
    script = app_dir / SCRIPT_FILE
    if not script.is_file():
        raise AppLoadError(
            f"{script}: not found (a Python v2 app has a function_app.py; "
            "v1 folders with function.json are not supported)"
        )
    try:
        import azure.functions as func
    except ImportError:
        raise AppLoadError(
            "the azure-functions package is not installed: pip install 'azure-functions<2'"
        ) from None
    root = str(app_dir)
    if root not in sys.path:
        sys.path.insert(0, root)
    os.chdir(app_dir)
    spec = importlib.util.spec_from_file_location("function_app", script)
    if spec is None or spec.loader is None:
        raise AppLoadError(f"{script}: cannot be imported")
    module = importlib.util.module_from_spec(spec)
    sys.modules["function_app"] = module
    try:
        spec.loader.exec_module(module)
    except BaseException as error:  # noqa: BLE001 - the user's import, reported on one line
        if isinstance(error, KeyboardInterrupt | SystemExit):
            raise
        raise AppLoadError(
            f"{script}: importing it failed: {type(error).__name__}: {error}",
            traceback.format_exc(),
        ) from None
    apps = [value for value in vars(module).values() if isinstance(value, func.FunctionRegister)]
    if not apps:
        raise AppLoadError(f"{script}: defines no FunctionApp (app = func.FunctionApp())")
    unique = list({id(app): app for app in apps}.values())
    if len(unique) > 1:
        raise AppLoadError(f"{script}: defines {len(unique)} FunctionApp instances; keep one")
    return unique[0]


def read_functions(app: Any) -> list[FunctionSpec]:
    """Every function of ``app`` with its bindings, checked like the worker checks them."""
    try:
        functions = app.get_functions()
    except Exception as error:  # noqa: BLE001 - the library's own validation of the app
        raise AppLoadError(f"the app's functions are invalid: {error}") from None
    specs = [_spec(function) for function in functions]
    seen: set[str] = set()
    for spec in specs:
        if spec.name.lower() in seen:
            raise AppLoadError(f"two functions are named {spec.name}")
        seen.add(spec.name.lower())
    if not specs:
        raise AppLoadError("the app declares no functions")
    return specs


def _spec(function: Any) -> FunctionSpec:
    name = function.get_function_name()
    document = json.loads(function.get_function_json())
    bindings = [_normalise(binding) for binding in document.get("bindings", [])]
    triggers = [binding for binding in bindings if binding["type"].endswith("Trigger")]
    if len(triggers) != 1:
        raise AppLoadError(f"function {name}: needs exactly one trigger, has {len(triggers)}")
    trigger = triggers[0]
    if trigger["type"] not in TRIGGER_TYPES:
        raise AppLoadError(
            f"function {name}: trigger {trigger['type']} is not supported by this host "
            f"(supported: {', '.join(TRIGGER_TYPES)})"
        )
    user_function = function.get_user_function()
    params, return_binding, requires_context = _params(name, user_function, bindings)
    return FunctionSpec(
        name=name,
        func=user_function,
        trigger=trigger,
        bindings=bindings,
        params=params,
        return_binding=return_binding,
        requires_context=requires_context,
        is_async=inspect.iscoroutinefunction(user_function),
    )


def _normalise(binding: dict[str, Any]) -> dict[str, Any]:
    result = dict(binding)
    result["direction"] = str(result.get("direction", "IN")).lower()
    if "dataType" in result and result["dataType"] is not None:
        result["dataType"] = str(result["dataType"]).lower()
    return result


def _params(
    name: str, user_function: Any, bindings: list[dict[str, Any]]
) -> tuple[list[Param], dict[str, Any] | None, bool]:
    try:
        signature = inspect.signature(user_function)
        hints = typing.get_type_hints(user_function)
    except Exception as error:  # noqa: BLE001 - an annotation that does not resolve
        raise AppLoadError(f"function {name}: cannot read its signature: {error}") from None
    declared = dict(signature.parameters)
    by_name: dict[str, dict[str, Any]] = {}
    return_binding: dict[str, Any] | None = None
    for binding in bindings:
        if binding["direction"] == "inout":
            raise AppLoadError(f"function {name}: inout bindings are not supported")
        if binding["name"] == "$return":
            if binding["direction"] != "out":
                raise AppLoadError(f'function {name}: "$return" must be an output binding')
            return_binding = binding
        else:
            by_name[binding["name"]] = binding
    requires_context = "context" in declared and "context" not in by_name
    if requires_context:
        declared.pop("context")
    missing = set(declared) - set(by_name)
    if missing:
        raise AppLoadError(
            f"function {name}: parameters {sorted(missing)} have no binding "
            "(declared in Python but not in the decorators)"
        )
    unused = set(by_name) - set(declared)
    if unused:
        raise AppLoadError(f"function {name}: bindings {sorted(unused)} are not parameters")
    params: list[Param] = []
    for parameter in declared.values():
        binding = by_name[parameter.name]
        annotation = hints.get(parameter.name)
        is_out_annotation = _is_out(annotation)
        is_out = binding["direction"] == "out"
        if is_out and annotation is not None and not is_out_annotation:
            raise AppLoadError(
                f"function {name}: {parameter.name} is an output binding; annotate it func.Out[...]"
            )
        if not is_out and is_out_annotation:
            raise AppLoadError(f"function {name}: {parameter.name} is an input, not func.Out")
        pytype = annotation
        if is_out_annotation:
            args = typing.get_args(annotation)
            pytype = args[0] if len(args) == 1 else None
        params.append(Param(parameter.name, binding, pytype, is_out))
    return params, return_binding, requires_context


def _is_out(annotation: Any) -> bool:
    origin = typing.get_origin(annotation) or annotation
    return isinstance(origin, type) and origin.__name__ == "Out"
