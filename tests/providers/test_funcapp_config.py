"""The functionapp target's options and a service's trigger, checked the way a
project file is: through the loader (schema errors at file:line) and then
``check_trigger`` (what the schema cannot say), with real positions."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from modelform.engine import kinds
from modelform.engine.config import Config
from modelform.engine.diagnostics import DiagnosticError
from modelform.engine.loader import load
from modelform.engine.values import UNKNOWN
from modelform.plugin import Resource
from modelform.providers import funcapp_config as fc
from modelform.providers import funcapp_trigger as ft
from modelform.providers import k8s_config
from tests.engine.catalogs import OneKindCatalog, service_resource

CATALOG = OneKindCatalog(
    "functionapp", fc.SERVICE_SCHEMA, fc.TARGET_SCHEMA, description="function apps"
)
HEAD = """\
project: p
models:
  ridge: {path: ridge.pkl}
targets:
  fn:
    kind: functionapp
    storage: {endpoint: "http://127.0.0.1:19000"}
services:
"""


def project(tmp_path: Path, services: str, head: str = HEAD) -> Path:
    (tmp_path / "ridge.pkl").write_bytes(b"weights")
    (tmp_path / "score.py").write_text("def init(): pass\ndef run(d): return d\n")
    path = tmp_path / "modelform.yaml"
    path.write_text(head + textwrap.indent(textwrap.dedent(services), "  "))
    return path


def loaded(tmp_path: Path, services: str, head: str = HEAD) -> Config:
    return load(project(tmp_path, services, head), environ={}, catalog=CATALOG)


def errors(tmp_path: Path, services: str, head: str = HEAD) -> list[str]:
    with pytest.raises(DiagnosticError) as e:
        loaded(tmp_path, services, head)
    return [str(d) for d in e.value.diagnostics]


def resource(cfg: Config, name: str) -> Resource:
    return service_resource(cfg, name, "functionapp")


def line_of(path: Path, text: str) -> int:
    """The 1-based line of the first line of ``path`` containing ``text``."""
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if text in line:
            return number
    raise AssertionError(f"{text!r} not in {path}")


def check(tmp_path: Path, services: str, storage_kind: str | None = "s3") -> list[str]:
    cfg = loaded(tmp_path, services)
    return [
        str(d)
        for name in cfg.services
        for d in ft.check_trigger(resource(cfg, name), storage_kind=storage_kind)
    ]


SVC = """\
{name}:
  target: fn
  models: [ridge]
  entry_script: score.py
  port: 7071
  trigger: {trigger}
"""


def svc(trigger: str, name: str = "api", extra: str = "") -> str:
    return SVC.format(name=name, trigger=trigger) + extra


# -- the schemas ----------------------------------------------------------------
def test_the_schemas_are_valid_json_schemas_with_a_description_for_every_option() -> None:
    for schema in (fc.TARGET_SCHEMA, fc.SERVICE_SCHEMA, ft.TRIGGER_SCHEMA, fc.STORAGE_SCHEMA):
        jsonschema.Draft202012Validator.check_schema(schema)
    for schema in (fc.TARGET_SCHEMA, ft.TRIGGER_SCHEMA, fc.STORAGE_SCHEMA):
        for key, prop in schema["properties"].items():
            assert prop.get("description"), key


def test_the_build_options_are_the_kubernetes_targets_own_declarations() -> None:
    for key in ("docker_host", "base_image", "carry_ca"):
        assert fc.TARGET_SCHEMA["properties"][key] is k8s_config.TARGET_SCHEMA["properties"][key]


def test_the_connection_string_is_marked_sensitive_as_option_schemas_mark_secrets() -> None:
    storage = fc.TARGET_SCHEMA["properties"]["storage"]
    assert storage["properties"]["connection_string"]["sensitive"] is True
    assert not storage["properties"]["endpoint"].get("sensitive")


def test_defaults_fill_in_and_a_minimal_target_loads(tmp_path: Path) -> None:
    cfg = loaded(tmp_path, svc("{kind: http}"))
    target = cfg.targets["fn"]
    assert (target["run_as"], target["poll_seconds"]) == ("process", 0.5)
    assert target["delete_receipts_on_destroy"] is False
    assert cfg.services["api"]["auth"] == "none"
    no_trigger = loaded(tmp_path, svc("{kind: http}").replace("  trigger: {kind: http}\n", ""))
    assert no_trigger.services["api"]["trigger"] == {"kind": "http"}


@pytest.mark.parametrize(
    ("storage", "message"),
    [
        ('{endpoint: "http://h:9000", connection_string: "UseDevelopmentStorage=true"}',
         'set either "endpoint" or "connection_string", not both'),
        ("{}", "should be non-empty"),
        ("{region: eu-west-1}", "'endpoint' is a dependency of 'region'"),
        ("{endpoint: ftp://h}", "is not valid"),
        ("{endpont: http://h}", 'unknown key "endpont" in targets.fn.storage'),
    ],
)  # fmt: skip
def test_a_bad_storage_is_an_error_at_its_line(tmp_path: Path, storage: str, message: str) -> None:
    head = HEAD.replace('storage: {endpoint: "http://127.0.0.1:19000"}', f"storage: {storage}")
    found = errors(tmp_path, svc("{kind: http}"), head)
    path = tmp_path / "modelform.yaml"
    assert any(message in e for e in found), found
    assert any(f"modelform.yaml:{line_of(path, 'storage:')}:" in e for e in found), found


def test_a_trigger_kind_typo_is_caught_by_the_schema_with_a_suggestion(tmp_path: Path) -> None:
    (found,) = errors(tmp_path, svc("{kind: blobb, container: c, input: x}"))
    assert "services.api.trigger.kind" in found and "not one of" in found
    assert 'did you mean "blob"' in found
    assert f"modelform.yaml:{line_of(tmp_path / 'modelform.yaml', 'trigger:')}:" in found


def test_an_unknown_trigger_key_is_caught_by_the_schema(tmp_path: Path) -> None:
    (found,) = errors(tmp_path, svc("{kind: queue, queue: q, output_qeue: r}"))
    assert 'unknown key "output_qeue"' in found and 'did you mean "output_queue"' in found


# -- options() --------------------------------------------------------------------
def test_options_of_an_s3_target_give_the_host_its_storage_setting() -> None:
    opts = fc.options(
        {
            "name": "fn",
            "kind": "functionapp",
            "storage": {"endpoint": "http://127.0.0.1:19000/", "region": "eu-west-1"},
        }
    )
    assert opts.storage is not None and opts.storage.kind == "s3"
    assert opts.storage.setting() == (
        "S3Endpoint=http://127.0.0.1:19000;Region=eu-west-1;PathStyle=true"
    )
    assert opts.storage.describe() == "S3 at http://127.0.0.1:19000 (eu-west-1)"
    assert (opts.run_as, opts.poll_seconds, opts.delete_receipts_on_destroy) == (
        "process",
        0.5,
        False,
    )
    plain = fc.options({"name": "fn", "storage": {"endpoint": "http://h", "path_style": False}})
    assert plain.storage is not None
    assert plain.storage.setting() == "S3Endpoint=http://h;Region=us-east-1"


SECRET = "c2VjcmV0LWtleS1ub3QtdG8tYmUtcHJpbnRlZA=="
AZURE = (
    f"DefaultEndpointsProtocol=http;AccountName=acct1;AccountKey={SECRET};"
    "BlobEndpoint=http://127.0.0.1:10000/acct1;QueueEndpoint=http://127.0.0.1:10001/acct1;"
)


def test_options_of_an_azure_target_keep_the_secret_out_of_repr_and_descriptions() -> None:
    opts = fc.options({"name": "fn", "storage": {"connection_string": AZURE}})
    assert opts.storage is not None and opts.storage.kind == "azure"
    assert opts.storage.setting() == AZURE
    assert SECRET not in repr(opts) and SECRET not in opts.storage.describe()
    assert opts.storage.describe() == "Azure Storage account acct1"
    dev = fc.options({"name": "fn", "storage": {"connection_string": "UseDevelopmentStorage=true"}})
    assert dev.storage is not None and dev.storage.describe().endswith("devstoreaccount1")


@pytest.mark.parametrize(
    ("conn", "problem"),
    [
        (f"AccountName=a;AccountKey={SECRET}", "names neither BlobEndpoint"),
        (f"AccountKey={SECRET};BlobEndpoint=http://h", "has no AccountName"),
        (SECRET.rstrip("="), "is not Key=Value pairs"),
        (f"SharedAccessSignature={SECRET}", "needs BlobEndpoint"),
    ],
)
def test_a_bad_connection_string_is_one_line_that_never_quotes_it(conn: str, problem: str) -> None:
    with pytest.raises(DiagnosticError) as e:
        fc.options({"name": "fn", "storage": {"connection_string": conn}})
    (d,) = e.value.diagnostics
    assert problem in d.message and SECRET not in str(d)
    assert d.message.startswith("target fn (functionapp): storage.connection_string")


def test_a_connection_string_not_yet_known_is_planned_as_azure() -> None:
    opts = fc.options({"name": "fn", "storage": {"connection_string": UNKNOWN}})
    assert opts.storage == fc.Storage("azure")


def test_options_refuse_an_option_of_another_kind() -> None:
    with pytest.raises(DiagnosticError, match="unknown option registry"):
        fc.options({"name": "fn", "kind": "functionapp", "registry": "r:5000"})


# -- check_trigger ------------------------------------------------------------------
def test_well_formed_triggers_of_every_kind_say_nothing(tmp_path: Path) -> None:
    services = "".join(
        [
            svc("{kind: http, route: predict/v1}", "a"),
            svc(
                '{kind: blob, bucket: requests, input: "input/{blobname}.json", '
                'output: "output/{blobname}_out.json"}',
                "b",
            ),
            svc(
                '{kind: blob, container: req, input: "in/{name}.{ext}", '
                'output: "out/{ext}/{name}"}',
                "b2",
            ),
            svc("{kind: queue, queue: requests, output_queue: responses}", "c"),
            svc("{kind: servicebus, queue: q, connection: ServiceBusConnection}", "d"),
            svc(
                "{kind: servicebus, topic: t, subscription: s, connection: SB, output_queue: o}",
                "e",
            ),
            svc("{kind: http, auth_level: function}", "f", "  auth: key\n"),
        ]
    )
    assert check(tmp_path, services) == []


CASES: list[tuple[str, str, str, str]] = [
    ("{kind: servicebus, queue: q, topic: t, subscription: s, connection: SB}",
     "topic:", 'trigger.topic: set either "queue" or "topic"', ""),
    ("{kind: servicebus, topic: t, connection: SB}",
     "trigger:", "trigger.topic: a topic needs a subscription", ""),
    ("{kind: servicebus, queue: q}",
     "trigger:", "trigger: a servicebus trigger needs connection", ""),
    ("{kind: servicebus, queue: q, connection: AzureWebJobsStorage}",
     "trigger:", "is the storage account, not a Service Bus namespace", ""),
    ("{kind: servicebus, subscription: s, connection: SB}",
     "trigger:", "subscription reads a topic", ""),
    ('{kind: blob, container: req, input: "in/{name}.json", output: "out/{nam}.json"}',
     "trigger:", "capture {nam} of the output is not captured by the input", ""),
    ('{kind: blob, container: req, input: "{name}.json", output: "{name}_out.json"}',
     "trigger:", "would trigger the function again", ""),
    ('{kind: blob, container: req, input: "in/", output: "in/done/{rand-guid}"}',
     "trigger:", "would trigger the function again", ""),
    ('{kind: blob, container: req, input: "in/{a}{b}"}',
     "trigger:", "two captures side by side", ""),
    ('{kind: blob, container: req, input: "in/{a}/{a}"}',
     "trigger:", "capture {a} appears twice", ""),
    ('{kind: blob, container: req, input: "in/{a.json"}',
     "trigger:", "unmatched brace", ""),
    ('{kind: blob, container: Req_1, input: "in/{a}"}',
     "trigger:", "'Req_1' is not an S3 bucket name", ""),
    ('{kind: blob, container: req, bucket: req, input: "in/{a}"}',
     "trigger:", 'set either "container" or "bucket"', ""),
    ("{kind: blob, container: req}",
     "trigger:", "needs an input pattern", ""),
    ('{kind: blob, container: req, input: "in/{a}", route: x}',
     "trigger:", "trigger.route: a blob trigger takes no route", ""),
    ("{kind: queue, queue: requests, output_queue: requests}",
     "trigger:", "output_queue is the queue read", ""),
    ("{kind: queue, queue: Requests}",
     "trigger:", "'Requests' is not a storage queue name", ""),
    ("{kind: queue, output_queue: responses}",
     "trigger:", "a queue trigger needs a queue", ""),
    ("{kind: http, route: admin/x}",
     "trigger:", "reserved by the Functions host", ""),
    ("{kind: http, route: /score}",
     "trigger:", "is not a route template", ""),
    ("{kind: http, auth_level: function}",
     "trigger:", "auth_level function needs auth: key", ""),
    ("{kind: http, auth_level: anonymous}",
     "trigger:", "would answer without the key", "  auth: key\n"),
]  # fmt: skip


@pytest.mark.parametrize(("trigger", "at", "message", "extra"), CASES)
def test_a_wrong_trigger_is_a_diagnostic_at_its_line(
    tmp_path: Path, trigger: str, at: str, message: str, extra: str
) -> None:
    found = check(tmp_path, svc(trigger, extra=extra))
    assert len(found) == 1, found
    assert message in found[0]
    assert found[0].startswith(
        f"{tmp_path / 'modelform.yaml'}:{line_of(tmp_path / 'modelform.yaml', at)}:"
    )
    assert "service.api: trigger" in found[0]


def test_the_positions_point_at_the_offending_key_in_a_block_trigger(tmp_path: Path) -> None:
    services = """\
    api:
      target: fn
      models: [ridge]
      entry_script: score.py
      port: 7071
      trigger:
        kind: servicebus
        queue: requests
        topic: t
        subscription: s
    """
    found = check(tmp_path, services)
    path = tmp_path / "modelform.yaml"
    assert found == [
        f"{path}:{line_of(path, 'topic: t')}:14: error: service.api: trigger.topic: set either "
        '"queue" or "topic" (with "subscription"), not both',
        f"{path}:{line_of(path, 'trigger:')}:5: error: service.api: trigger: a servicebus trigger "
        "needs connection: the app setting holding the Service Bus connection string (add "
        "connection: ServiceBusConnection and set that variable in env)",
    ]


def test_an_unknown_kind_is_said_even_without_the_schema() -> None:
    r = Resource("service.api", "service", "api", "functionapp", {"trigger": {"kind": "timer"}})
    (d,) = ft.check_trigger(r)
    assert "unknown kind 'timer'" in d.message and "http, blob, queue, servicebus" in str(d)
    missing = Resource("service.api", "service", "api", "functionapp", {"trigger": {"queue": "q"}})
    assert "missing kind" in ft.check_trigger(missing)[0].message


def test_a_storage_trigger_on_a_target_without_storage_points_at_the_target_key(
    tmp_path: Path,
) -> None:
    found = check(tmp_path, svc('{kind: blob, container: req, input: "in/{a}"}'), None)
    (only,) = found
    assert "reads the target's storage, and the target sets none" in only
    assert f":{line_of(tmp_path / 'modelform.yaml', 'target: fn')}:" in only
    other = check(
        tmp_path, svc('{kind: blob, container: req, input: "in/{a}", connection: X}'), None
    )
    assert other == []


def test_azure_container_names_take_no_dots_where_s3_buckets_do(tmp_path: Path) -> None:
    services = svc('{kind: blob, container: my.bucket, input: "in/{a}"}')
    assert check(tmp_path, services, "s3") == []
    (found,) = check(tmp_path, services, "azure")
    assert "'my.bucket' is not a container name" in found


def test_values_not_known_while_planning_are_left_for_apply() -> None:
    trigger: dict[str, Any] = {"kind": "servicebus", "queue": UNKNOWN, "connection": "SB"}
    r = Resource("service.api", "service", "api", "functionapp", {"trigger": trigger})
    assert ft.check_trigger(r) == []
    r2 = Resource("service.api", "service", "api", "functionapp", {"trigger": UNKNOWN})
    assert ft.check_trigger(r2) == []
    blob = {"kind": "blob", "container": "c", "input": UNKNOWN, "output": "out/{x}"}
    assert ft.check_trigger(Resource("s", "service", "s", "f", {"trigger": blob})) == []


def test_normalize_fills_defaults_and_names_the_functions() -> None:
    assert ft.normalize({"kind": "blob", "bucket": "b", "input": "i/{n}"}) == {
        "kind": "blob",
        "container": "b",
        "input": "i/{n}",
        "connection": "AzureWebJobsStorage",
    }
    assert ft.normalize(None, "key") == {"kind": "http", "route": "score", "auth_level": "function"}
    assert ft.normalize({"kind": "queue", "queue": "q"})["connection"] == "AzureWebJobsStorage"
    assert (ft.function_name("diabetes-fn"), ft.http_function_name("diabetes-fn")) == (
        "diabetes_fn",
        "diabetes_fn_http",
    )
    assert ft.function_name("7up") == "fn_7up"
    assert ft.http_auth_level({"kind": "blob"}, "key") == "function"
    assert ft.http_auth_level({"kind": "http", "auth_level": "anonymous"}, "none") == "anonymous"


def test_the_kind_schema_feeds_the_generated_reference(tmp_path: Path) -> None:
    text = kinds.kinds_markdown(CATALOG, ["functionapp"])
    assert "| `storage` |" in text and "| `trigger` |" in text and "| `run_as` |" in text
    assert "`process` \\| `container`" in text
