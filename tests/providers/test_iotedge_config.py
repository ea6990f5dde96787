"""The iotedge target's options and a service's ``module:``, checked the way a
project file is: through the loader (schema errors at file:line), then
check_service / check_deployment (what a schema cannot say) with the
real positions; and the manifest a loaded project makes."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from modelform.engine.config import Config
from modelform.engine.diagnostics import DiagnosticError
from modelform.engine.loader import load
from modelform.engine.values import UNKNOWN
from modelform.plugin import Resource
from modelform.providers import iotedge_config as ic
from modelform.providers import iotedge_manifest as im
from modelform.providers import k8s_config
from tests.engine.catalogs import OneKindCatalog, service_resource

CATALOG = OneKindCatalog(
    "iotedge", ic.SERVICE_SCHEMA, ic.TARGET_SCHEMA, description="IoT Edge devices"
)
TO_MODEL = 'FROM /messages/modules/sensor/outputs/rows INTO BrokeredEndpoint("/modules/diabetes/inputs/rows")'  # noqa: E501
UP = "FROM /messages/modules/diabetes/outputs/predictions INTO $upstream"
TARGET = f"""\
  edge:
    kind: iotedge
    device: line-7
    registry: 127.0.0.1:15000
    modules:
      sensor:
        image: 127.0.0.1:15000/sensor:1
        env: {{INTERVAL: "0.1"}}
        outputs: [rows]
    routes:
      sensorToModel: {TO_MODEL}
      modelToUpstream: {UP}
"""
DIABETES = """\
  diabetes:
    target: edge
    models: [ridge]
    entry_script: score.py
    module:
      inputs: [rows]
      outputs: [predictions]
      desired_properties: {threshold: 0.5}
"""


def project(tmp_path: Path, target: str = TARGET, services: str = DIABETES) -> Path:
    (tmp_path / "ridge.pkl").write_bytes(b"weights")
    (tmp_path / "score.py").write_text("def init(): pass\ndef run(d): return d\n")
    path = tmp_path / "modelform.yaml"
    head = "project: p\nmodels:\n  ridge: {path: ridge.pkl}\n"
    path.write_text(f"{head}targets:\n{target}services:\n{services}")
    return path


def loaded(tmp_path: Path, target: str = TARGET, services: str = DIABETES) -> Config:
    return load(project(tmp_path, target, services), environ={}, catalog=CATALOG)


def load_errors(tmp_path: Path, target: str = TARGET, services: str = DIABETES) -> list[str]:
    with pytest.raises(DiagnosticError) as e:
        loaded(tmp_path, target, services)
    return [str(d) for d in e.value.diagnostics]


def service(cfg: Config, name: str) -> Resource:
    return service_resource(cfg, name, "iotedge")


def device(cfg: Config, name: str = "edge") -> Resource:
    """The target's own resource (``target.edge/manifest``), as the planner makes it."""
    return Resource(
        address=f"target.{name}/manifest",
        type="target",
        name=name,
        provider="iotedge",
        config=cfg.targets[name],
        pos=cfg.pos(("targets", name)),
        positions=cfg.positions_under("targets", name),
    )


def checked(tmp_path: Path, target: str = TARGET, services: str = DIABETES) -> list[str]:
    """Every diagnostic, as the provider says them: check_service for each
    service, check_deployment for the device."""
    cfg = loaded(tmp_path, target, services)
    found = []
    for name in cfg.services:
        found += ic.check_service(service(cfg, name), {"name": "edge", **cfg.targets["edge"]})
    found += ic.check_deployment(device(cfg), [service(cfg, n) for n in cfg.services])
    return [str(d) for d in found]


def at(tmp_path: Path, text: str, nth: int = 1) -> str:
    """``/modelform.yaml:LINE:`` of the ``nth`` line containing ``text``."""
    lines = (tmp_path / "modelform.yaml").read_text().splitlines()
    numbers = [i for i, line in enumerate(lines, 1) if text in line]
    return f"/modelform.yaml:{numbers[nth - 1]}:"


# -- the schemas ----------------------------------------------------------------------
def test_the_schemas_are_valid_json_schemas_with_a_description_for_every_option() -> None:
    for schema in (ic.TARGET_SCHEMA, ic.SERVICE_SCHEMA, ic.MODULE_SCHEMA, ic.TARGET_MODULE_SCHEMA):
        jsonschema.Draft202012Validator.check_schema(schema)
    for schema in (ic.TARGET_SCHEMA, ic.MODULE_SCHEMA, ic.TARGET_MODULE_SCHEMA):
        for key, prop in schema["properties"].items():
            assert prop.get("description"), key
    for key in ic.BUILD_OPTIONS:
        assert ic.TARGET_SCHEMA["properties"][key] is k8s_config.TARGET_SCHEMA["properties"][key]


def test_the_example_loads_checks_clean_and_gets_its_defaults(tmp_path: Path) -> None:
    cfg = loaded(tmp_path)
    assert cfg.targets["edge"]["run_as"] == "container"
    assert checked(tmp_path) == []
    bare = loaded(tmp_path, services=DIABETES.split("    module:")[0])
    assert bare.services["diabetes"]["module"] == {}


@pytest.mark.parametrize(
    ("old", "new", "line", "message"),
    [
        ("    registry:", "    hub: {}\n    registry:", "hub:",
         'targets.edge.hub: missing required key "connection_string_env"'),
        ("    device: line-7\n", "", "edge:", 'missing required key "device"'),
        ("        outputs: [rows]", "        outputs: [rows]\n        restart_policy: allways",
         "restart_policy:", '"allways" is not one of: always, on-failure, on-unhealthy, never'),
        ("        outputs: [rows]", "        outputs: [rows]\n        imag: x", "imag:",
         'unknown key "imag"'),
        ("    registry: 127.0.0.1:15000", "    registry: http://127.0.0.1:15000", "registry:",
         "targets.edge.registry"),
        ("      modelToUpstream:", "      late: {route: x, priority: 10}\n      modelToUpstream:",
         "late:", "greater than the maximum 9"),
    ],
)  # fmt: skip
def test_what_the_schema_refuses_is_said_at_load_at_its_line(
    tmp_path: Path, old: str, new: str, line: str, message: str
) -> None:
    found = load_errors(tmp_path, TARGET.replace(old, new))
    assert any(message in e and at(tmp_path, line) in e for e in found), found


def test_a_service_module_option_the_schema_refuses_is_said_at_load(tmp_path: Path) -> None:
    svc = DIABETES.replace("      inputs: [rows]", "      inputs: []\n      restart: never")
    found = load_errors(tmp_path, services=svc)
    assert any('unknown key "restart"' in e and at(tmp_path, "restart:") in e for e in found)
    assert any("services.diabetes.module.inputs" in e for e in found), found


# -- routes ---------------------------------------------------------------------------
def route(name: str, text: str) -> str:
    return TARGET + f"      {name}: {text}\n"


def test_an_invalid_route_is_a_diagnostic_at_its_line(tmp_path: Path) -> None:
    found = checked(
        tmp_path, route("bad", "FROM /messages/modules/sensor/outputs/rows INTO $cloud")
    )
    assert [e.split(at(tmp_path, "bad:"), 1)[1] for e in found] == [
        "12: error: targets.edge.routes.bad: invalid route: unknown sink "
        "'$cloud'; sinks: $upstream, BrokeredEndpoint(\"/modules/<module>/inputs/<input>\") "
        "(FROM <source> [WHERE <condition>] INTO <sink>)"
    ]


def test_a_route_naming_an_unknown_module_is_a_diagnostic_with_a_suggestion(
    tmp_path: Path,
) -> None:
    (found,) = checked(
        tmp_path,
        route("typo", 'FROM /messages/* INTO BrokeredEndpoint("/modules/diabtes/inputs/rows")'),
    )
    assert at(tmp_path, "typo:") in found
    assert (
        "targets.edge.routes.typo: names module 'diabtes', which is not in the deployment" in found
    )
    assert 'did you mean "diabetes"?' in found and "its modules: diabetes, sensor" in found


def test_a_route_to_an_undeclared_input_or_from_an_undeclared_output_is_a_diagnostic(
    tmp_path: Path,
) -> None:
    target = TARGET.replace("inputs/rows", "inputs/row").replace("outputs/predictions", "outputs/x")
    first, second = checked(tmp_path, target)
    assert at(tmp_path, "sensorToModel:") in first
    assert "module diabetes has no input 'row' (did you mean \"rows\"?)" in first
    assert "declare it in services.diabetes.module.inputs" in first
    assert at(tmp_path, "modelToUpstream:") in second
    assert "module diabetes has no output 'x'" in second
    assert "its outputs: predictions, errors" in second


def test_the_error_output_and_undeclared_lists_of_other_modules_are_accepted(
    tmp_path: Path,
) -> None:
    target = route("failures", "FROM /messages/modules/diabetes/outputs/errors INTO $upstream")
    target = target.replace("        outputs: [rows]\n", "")  # sensor: any output
    target += '      back: FROM /messages/modules/diabetes/* INTO BrokeredEndpoint("/modules/sensor/inputs/any")\n'  # noqa: E501
    assert checked(tmp_path, target) == []
    undeclared = TARGET.replace("outputs/rows", "outputs/other")
    (found,) = checked(tmp_path, undeclared)
    assert "module sensor has no output 'other'" in found
    assert "declare it in the target's modules.sensor.outputs" in found


def test_routes_on_a_service_are_checked_and_go_into_the_manifest(tmp_path: Path) -> None:
    svc = DIABETES + "      routes:\n        results: " + UP + "\n"
    target = TARGET.split("    routes:")[0] + f"    routes:\n      sensorToModel: {TO_MODEL}\n"
    assert checked(tmp_path, target, svc) == []
    cfg = loaded(tmp_path, target, svc)
    specs = ic.specs(
        ic.options({"name": "edge", **cfg.targets["edge"]}), [service(cfg, "diabetes")]
    )
    assert [s.name for s in specs] == ["sensorToModel", "results"]
    bad = svc.replace("outputs/predictions", "outputs/nope")
    (found,) = checked(tmp_path, target, bad)
    assert at(tmp_path, "results:") in found
    assert "services.diabetes.module.routes.results: module diabetes has no output 'nope'" in found


def test_route_names_are_unique_on_the_device(tmp_path: Path) -> None:
    svc = DIABETES + "      routes:\n        modelToUpstream: " + UP + "\n"
    (found,) = checked(tmp_path, services=svc)
    assert at(tmp_path, "modelToUpstream:", 2) in found
    assert (
        "services.diabetes.module.routes.modelToUpstream: route 'modelToUpstream' is also " in found
    )
    results = "      routes:\n        results: " + UP + "\n"
    second = DIABETES.replace("  diabetes:", "  second:") + results
    (found,) = checked(tmp_path, services=DIABETES + results + second)
    assert at(tmp_path, "results:", 2) in found
    assert (
        "services.second.module.routes.results: route 'results' is also declared at "
        "services.diabetes.module.routes.results" in found
    )


def test_schema_version_1_0_cannot_carry_priorities_or_a_startup_order(tmp_path: Path) -> None:
    target = TARGET.replace("    modules:", '    runtime: {schema_version: "1.0"}\n    modules:')
    target = target.replace(
        f"modelToUpstream: {UP}", f"modelToUpstream: {{route: {UP}, priority: 0}}"
    )
    svc = DIABETES + "      startup_order: 1\n"
    found = checked(tmp_path, target, svc)
    assert len(found) == 2, found
    assert any(
        "module.startup_order: startup_order needs runtime.schema_version 1.1" in e for e in found
    )
    assert any(
        at(tmp_path, "modelToUpstream:") in e and "priority and time_to_live_secs need" in e
        for e in found
    ), found


# -- modules --------------------------------------------------------------------------
def test_two_modules_of_one_name_are_a_diagnostic(tmp_path: Path) -> None:
    svc = DIABETES.replace("      inputs:", "      name: sensor\n      inputs:")
    found = checked(tmp_path, services=svc)
    assert any(
        at(tmp_path, "name: sensor") in e
        and "services.diabetes.module.name: module 'sensor' is also one of the target's modules"
        in e
        for e in found
    ), found
    copy = DIABETES.replace("  diabetes:", "  copy:").replace(
        "inputs:", "name: diabetes\n      inputs:"
    )
    (found_two,) = checked(tmp_path, services=DIABETES + copy)
    assert at(tmp_path, "name: diabetes") in found_two
    assert "services.copy.module: module 'diabetes' is also service diabetes's" in found_two


@pytest.mark.parametrize(
    ("old", "new", "line", "message"),
    [
        ("        image: 127.0.0.1:15000/sensor:1\n", "", "sensor:",
         "targets.edge.modules.sensor: a module has either image: or script:"),
        ("        image: 127.0.0.1:15000/sensor:1", "        image: s:1\n        script: s.py",
         "sensor:", "a module has either image: or script:"),
        ("      sensor:", "      edgeHub:", "edgeHub:",
         "module name 'edgeHub' is the edge runtime's own"),
        ("      sensor:", "      -sensor:", "-sensor:", "module name '-sensor' is not valid"),
        ("        outputs: [rows]", "        outputs: [rows, bad/name]", "outputs:",
         "output name 'bad/name' is not valid"),
        ("        outputs: [rows]", "        outputs: [rows]\n        desired_properties: {a.b: 1}",
         "desired_properties:", "desired properties: key 'a.b' has '.'"),
        ('        env: {INTERVAL: "0.1"}', '        env: {INTERVAL.S: "0.1"}', "env:",
         "environment variable 'INTERVAL.S'"),
        ("    registry: 127.0.0.1:15000",
         "    registry_credentials: {acr: {address: https://x.azurecr.io, username_env: U, "
         "password_env: P}}", "registry_credentials:",
         "write the registry's host without a scheme"),
    ],
)  # fmt: skip
def test_a_wrong_target_module_is_a_diagnostic_at_its_line(
    tmp_path: Path, old: str, new: str, line: str, message: str
) -> None:
    found = [e for e in checked(tmp_path, TARGET.replace(old, new)) if message in e]
    assert len(found) == 1 and at(tmp_path, line) in found[0], checked(
        tmp_path, TARGET.replace(old, new)
    )


@pytest.mark.parametrize(
    ("add", "line", "message"),
    [
        ("      error_output: predictions\n", "error_output:",
         "'predictions' is also a result output: failures would look like results"),
        ("      create_options: {HostConfig: {NanoCpus: 5}}\n    cpu: 1\n", "NanoCpus",
         "HostConfig.NanoCpus is set here and by the service's cpu: set it in one place"),
        ("      create_options: {HostConfig: {Memory: 5}}\n    resources: {memory_gb: 1}\n",
         "Memory", "HostConfig.Memory is set here and by the service's memory_gb"),
        ('      create_options: {Env: ["' + "x" * 4100 + '"]}\n', "create_options:",
         "characters as JSON; a module's createOptions holds at most 4096 (8 parts of 512)"),
        ("      name: Model.v2\n", "name: Model.v2", "module name 'Model.v2' is not valid"),
        ("    env: {bad name: 1}\n", "bad name", "environment variable 'bad name'"),
    ],
)  # fmt: skip
def test_a_wrong_service_module_is_a_diagnostic_at_its_line(
    tmp_path: Path, add: str, line: str, message: str
) -> None:
    everything = checked(tmp_path, services=DIABETES + add)
    found = [e for e in everything if message in e]
    assert len(found) == 1 and at(tmp_path, line) in found[0], everything


def test_a_policy_that_came_from_a_reference_is_checked_once_known(tmp_path: Path) -> None:
    cfg = loaded(tmp_path)
    svc = service(cfg, "diabetes")
    svc.config["module"]["restart_policy"] = "on-failur"
    (found,) = ic.check_service(svc, cfg.targets["edge"])
    assert found.message == (
        "services.diabetes.module.restart_policy: 'on-failur' is not one of: always, "
        "on-failure, on-unhealthy, never"
    )
    assert found.hint == 'did you mean "on-failure"?'
    svc.config["module"]["restart_policy"] = UNKNOWN
    svc.config["module"]["routes"] = {"r": UNKNOWN}
    assert ic.check_service(svc, cfg.targets["edge"]) == []


# -- the hub --------------------------------------------------------------------------
CONNECTION = "HostName=h.azure-devices.net;SharedAccessKeyName=iothubowner;SharedAccessKey=c2VjcmV0"


def test_a_hub_needs_the_name_of_its_variable_never_the_connection_string(tmp_path: Path) -> None:
    cfg = loaded(tmp_path)
    edge = device(cfg)
    edge.config["hub"] = {"connection_string_env": CONNECTION}
    (found,) = ic.check_target(edge)
    assert found.message == (
        "targets.edge.hub.connection_string_env: expected the name of an environment variable, "
        "not a connection string (not shown)"
    )
    assert "c2VjcmV0" not in str(found) and "HostName" not in str(found)
    for hub in ({}, "IOTHUB_CONNECTION_STRING", None):
        edge.config["hub"] = hub
        (missing,) = ic.check_target(edge)
        assert "hub needs the name of the environment variable" in missing.message
        assert missing.hint == "hub: {connection_string_env: IOTHUB_CONNECTION_STRING}"
    edge.config["hub"] = {"connection_string_env": "IOTHUB_CONNECTION_STRING"}
    assert ic.check_target(edge) == []


def test_a_hub_with_its_variable_loads_and_is_hub_mode(tmp_path: Path) -> None:
    target = TARGET.replace(
        "    registry:", "    hub: {connection_string_env: IOTHUB_CONNECTION_STRING}\n    registry:"
    )
    cfg = loaded(tmp_path, target)
    opts = ic.options({"name": "edge", **cfg.targets["edge"]})
    assert opts.hub_mode and opts.hub_connection_string_env == "IOTHUB_CONNECTION_STRING"
    assert not ic.options({"name": "edge", "device": "d"}).hub_mode


# -- options and the manifest ---------------------------------------------------------------
def test_options_fill_in_the_runtime_and_refuse_another_kinds_option() -> None:
    opts = ic.options(
        {
            "name": "edge",
            "kind": "iotedge",
            "device": "line-7",
            "registry": "127.0.0.1:15000/",
            "registry_credentials": {
                "acr": {"address": "x.azurecr.io", "username_env": "U", "password_env": "P"}
            },
            "runtime": {"schema_version": "1.0", "time_to_live_secs": 60},
        }
    )
    assert (opts.device, opts.registry, opts.run_as) == ("line-7", "127.0.0.1:15000", "container")
    assert opts.runtime == im.Runtime(
        schema_version="1.0",
        time_to_live_secs=60,
        registry_credentials=(im.RegistryCredential("acr", "x.azurecr.io", "U", "P"),),
    )
    assert opts.modules == () and opts.routes == ()
    with pytest.raises(DiagnosticError, match=r"target edge \(iotedge\): unknown option namespace"):
        ic.options({"name": "edge", "device": "d", "namespace": "ml"})


def test_a_service_module_gets_its_defaults_and_its_limits_as_create_options() -> None:
    decl = ic.service_module("api", {"cpu": 0.5, "memory_gb": 0.5, "env": {"N": 1}})
    assert (decl.name, decl.inputs, decl.outputs, decl.error_output) == (
        "api",
        ("input1",),
        ("output1",),
        "errors",
    )
    assert decl.create_options == {
        "HostConfig": {"NanoCpus": 500_000_000, "Memory": 536870912, "MemorySwap": 536870912}
    }
    module = decl.module(image="r/api:1")
    assert module.env == {"N": "1"} and module.image == "r/api:1"
    assert decl.module("r/api:1", env={"A": "b"}).env == {"A": "b"}
    with pytest.raises(im.ManifestError, match="no image yet"):
        decl.module()


def _manifest(cfg: Config, version: int) -> dict[str, Any]:
    opts = ic.options({"name": "edge", **cfg.targets["edge"]})
    services = [service(cfg, n) for n in cfg.services]
    modules = [d.module() for d in opts.modules] + [
        ic.module_of(s).module(image=f"127.0.0.1:15000/{s.name}:{version}") for s in services
    ]
    return im.manifest(opts.runtime, modules, ic.specs(opts, services))


def test_a_loaded_project_makes_a_valid_manifest_and_a_new_model_changes_one_image(
    tmp_path: Path,
) -> None:
    cfg = loaded(tmp_path)
    first = _manifest(cfg, 2)
    assert im.validate(first) == []
    content = first["modulesContent"]
    assert set(content["$edgeAgent"]["properties.desired"]["modules"]) == {"diabetes", "sensor"}
    assert content["$edgeHub"]["properties.desired"]["routes"] == {
        "sensorToModel": TO_MODEL,
        "modelToUpstream": UP,
    }
    assert content["diabetes"] == {"properties.desired": {"threshold": 0.5}}
    assert im.manifest_digest(_manifest(loaded(tmp_path), 2)) == im.manifest_digest(first)
    assert im.diff(first, _manifest(cfg, 3)) == [
        "module diabetes: image 127.0.0.1:15000/diabetes:2 → 127.0.0.1:15000/diabetes:3"
    ]


def test_positions_point_into_the_project_file_text(tmp_path: Path) -> None:
    text = textwrap.dedent(TARGET)
    assert "sensorToModel" in text  # the fixture the line assertions above rely on
    cfg = loaded(tmp_path)
    decls = ic.routes_of(device(cfg))
    assert [d.where for d in decls] == [
        "targets.edge.routes.sensorToModel",
        "targets.edge.routes.modelToUpstream",
    ]
    assert at(tmp_path, "sensorToModel:") in str(decls[0].pos) + ":"
