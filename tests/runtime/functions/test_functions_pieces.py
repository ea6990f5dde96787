"""The functions host's pieces without storage: patterns, settings, routes, loading an app,
the binding types the worker passes, queue message text, receipts, service bus messages."""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest
from functions_harness import write_app

from modelform.runtime.functions import bindings, loader, patterns, queues, settings
from modelform.runtime.functions.httpapp import compile_route
from modelform.runtime.functions.receipts import PROCESSING, Owner, Receipt, utc_now

# ---- blob path patterns --------------------------------------------------------------------


def test_trigger_path_splits_container_prefix_and_captures() -> None:
    pattern = patterns.parse_trigger_path("requests/input/{blobname}.json")
    assert (pattern.container, pattern.prefix, pattern.names) == (
        "requests",
        "input/",
        ("blobname",),
    )
    assert pattern.match("input/a.json") == {"blobname": "a"}
    assert pattern.match("input/sub/dir/a.b.json") == {"blobname": "sub/dir/a.b"}
    assert pattern.match("input/a.txt") is None
    assert pattern.match("output/a_out.json") is None


def test_several_captures_and_escaped_braces() -> None:
    pattern = patterns.parse_trigger_path("c/{dir}/x-{id}.{ext}")
    assert pattern.prefix == ""
    assert pattern.match("d/x-1.csv") == {"dir": "d", "id": "1", "ext": "csv"}
    braces = patterns.parse_trigger_path("c/{{lit}}/{name}")
    assert braces.prefix == "{lit}/"
    assert braces.match("{lit}/n") == {"name": "n"}


def test_a_container_alone_captures_the_whole_name() -> None:
    pattern = patterns.parse_trigger_path("samples-workitems")
    assert pattern.prefix == "" and pattern.match("a/b.txt") == {"name": "a/b.txt"}


@pytest.mark.parametrize("bad", ["{c}/x", "", "c/{a}/{a}", "c/{bad name}"])
def test_bad_trigger_paths_are_one_line_errors(bad: str) -> None:
    with pytest.raises(patterns.PatternError) as error:
        patterns.parse_trigger_path(bad)
    assert "\n" not in str(error.value)


def test_output_templates_fill_captures_case_insensitively_and_check_names() -> None:
    data = {"blobname": "a/b", "BlobTrigger": "c/input/a/b.json"}
    assert patterns.fill_template("c/output/{BlobName}_out.json", data) == "c/output/a/b_out.json"
    assert len(patterns.fill_template("c/{rand-guid}", data)) == len("c/") + 36
    patterns.check_template("c/output/{blobname}", {"blobname"}, "f")
    with pytest.raises(patterns.PatternError, match=r"\{name\}, which the trigger does not"):
        patterns.check_template("c/output/{name}", {"blobname"}, "function f")


# ---- settings ------------------------------------------------------------------------------


def test_local_settings_values_are_overridden_by_the_environment(tmp_path: Path) -> None:
    write_app(tmp_path, "x = 1\n", settings={"A": "from-file", "B": "file"})
    values = settings.load_app_settings(tmp_path, {"A": "from-env"})
    assert values["A"] == "from-env" and values["B"] == "file"
    assert values["FUNCTIONS_WORKER_RUNTIME"] == "python"


def test_connection_settings_name_azure_or_s3() -> None:
    azurite = (
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5==;"
        "BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;"
        "QueueEndpoint=http://127.0.0.1:10001/devstoreaccount1;"
    )
    found = settings.storage_from_setting("S", {"S": azurite})
    assert isinstance(found, settings.AzureStorage)
    assert found.blob_endpoint == "http://127.0.0.1:10000/devstoreaccount1"
    real = settings.storage_from_setting("S", {"S": "AccountName=acct;AccountKey=k=="})
    assert isinstance(real, settings.AzureStorage)
    assert real.queue_endpoint == "https://acct.queue.core.windows.net"
    dev = settings.storage_from_setting("S", {"S": "UseDevelopmentStorage=true"})
    assert isinstance(dev, settings.AzureStorage) and dev.account == "devstoreaccount1"
    s3 = settings.storage_from_setting("S", {"S": "S3Endpoint=http://127.0.0.1:19000/;Region=eu"})
    assert s3 == settings.S3Storage("http://127.0.0.1:19000", "eu", True)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "the app setting S is not set"),
        ("Foo=bar", "neither an Azure Storage connection string"),
        ("S3Endpoint=ftp://x", "S3Endpoint must be an http"),
        ("junk", "not a Key=Value pair"),
    ],
)
def test_unusable_connection_settings_say_why(value: str, message: str) -> None:
    with pytest.raises(settings.SettingsError, match=message):
        settings.storage_from_setting("S", {"S": value})


def test_service_bus_settings_and_host_json() -> None:
    good = "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=k;SharedAccessKey=s="
    assert settings.servicebus_from_setting("SB", {"SB": good}) == good
    with pytest.raises(settings.SettingsError, match="not a Service Bus connection string"):
        settings.servicebus_from_setting("SB", {"SB": "AccountName=a"})
    options = settings.host_options(
        {
            "version": "2.0",
            "extensions": {
                "http": {"routePrefix": ""},
                "queues": {
                    "batchSize": 4,
                    "maxDequeueCount": 3,
                    "visibilityTimeout": "00:00:02",
                    "messageEncoding": "none",
                },
            },
        }
    )
    assert options.route_prefix == ""
    assert options.queues == settings.QueueOptions(4, 3, 2.0, False)
    with pytest.raises(settings.SettingsError, match="batchSize"):
        settings.host_options({"extensions": {"queues": {"batchSize": 0}}})
    assert settings.sanitize_host_id("My_App.Folder!") == "my-app-folder"


# ---- loading an app ------------------------------------------------------------------------


def _load(tmp_path: Path, source: str) -> list[loader.FunctionSpec]:
    app_dir = write_app(tmp_path / f"app{len(list(tmp_path.iterdir()))}", source)
    sys.modules.pop("function_app", None)
    return loader.read_functions(loader.import_app(app_dir))


def test_an_app_is_read_through_the_librarys_own_metadata(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    specs = _load(
        tmp_path,
        """
        import azure.functions as func
        bp = func.Blueprint()

        @bp.queue_trigger(arg_name="msg", queue_name="q", connection="C")
        def from_blueprint(msg: func.QueueMessage, context: func.Context) -> None:
            pass

        app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)
        app.register_functions(bp)

        @app.function_name("renamed")
        @app.route(route="r/{id}")
        @app.blob_output(arg_name="out", path="c/{id}", connection="C")
        def handler(req: func.HttpRequest, out: func.Out[bytes]) -> func.HttpResponse:
            return func.HttpResponse("x")
        """,
    )
    by_name = {spec.name: spec for spec in specs}
    assert set(by_name) == {"from_blueprint", "renamed"}
    handler = by_name["renamed"]
    assert handler.trigger_type == "httpTrigger" and handler.trigger["route"] == "r/{id}"
    assert handler.return_binding is not None and handler.return_binding["type"] == "http"
    out = next(param for param in handler.params if param.is_out)
    assert (out.name, out.pytype, out.binding["type"]) == ("out", bytes, "blob")
    queue = by_name["from_blueprint"]
    assert queue.requires_context and queue.trigger["queueName"] == "q"


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("import azure.functions as func\n", "defines no FunctionApp"),
        ("raise RuntimeError('boom')\n", "importing it failed: RuntimeError: boom"),
        (
            "import azure.functions as func\napp = func.FunctionApp()\n"
            "@app.timer_trigger(arg_name='t', schedule='0 * * * * *')\ndef f(t) -> None: ...\n",
            "trigger timerTrigger is not supported",
        ),
        (
            "import azure.functions as func\napp = func.FunctionApp()\n"
            "@app.blob_trigger(arg_name='b', path='c/{n}', connection='C')\n"
            "@app.blob_output(arg_name='o', path='c/o/{n}', connection='C')\n"
            "def f(b, o: str) -> None: ...\n",
            "o is an output binding; annotate it func.Out",
        ),
    ],
)
def test_apps_the_host_cannot_run_are_one_line_errors(
    tmp_path: Path, monkeypatch: Any, source: str, message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    with pytest.raises(loader.AppLoadError) as error:
        _load(tmp_path, source)
    assert message in str(error.value) and "\n" not in str(error.value)


# ---- the values a function gets and gives --------------------------------------------------


def _param(binding_type: str, pytype: Any = None, is_out: bool = False) -> loader.Param:
    return loader.Param("p", {"type": binding_type, "name": "p"}, pytype, is_out)


def test_blob_and_queue_arguments_are_the_workers_types() -> None:
    facts = bindings.BlobFacts("c", "in/a.json", "http://s/c/in/a.json", "e1", 3, "text/plain")
    stream = bindings.blob_value(b"abc", facts, _param("blobTrigger"))
    assert isinstance(stream, func.InputStream)
    assert (stream.name, stream.uri, stream.length, stream.read()) == (
        "c/in/a.json",
        "http://s/c/in/a.json",
        3,
        b"abc",
    )
    assert stream.blob_properties["ContentType"] == "text/plain"
    assert bindings.blob_value(b"abc", facts, _param("blobTrigger", str)) == "abc"
    assert bindings.blob_value(b"abc", facts, _param("blobTrigger", bytes)) == b"abc"
    queue_facts = bindings.QueueFacts("m1", 3, "2026-01-02T03:04:05+00:00", None, None, "pr")
    message = bindings.queue_value(b'{"x": 1}', queue_facts, _param("queueTrigger"))
    assert isinstance(message, func.QueueMessage)
    assert (message.id, message.dequeue_count, message.get_json()) == ("m1", 3, {"x": 1})
    assert message.insertion_time is not None and message.insertion_time.year == 2026


def test_outputs_are_encoded_as_the_worker_encodes_them() -> None:
    assert bindings.blob_bytes("é", str, "f") == "é".encode()
    assert bindings.blob_bytes(b"\x00", bytes, "f") == b"\x00"
    with pytest.raises(
        bindings.BindingError, match='unsupported type "blob" for Python type "dict"'
    ):
        bindings.blob_bytes({"a": 1}, None, "f")
    assert bindings.queue_messages(["a", "b"], None, "f") == [b"a", b"b"]
    assert bindings.queue_messages(b"raw", None, "f") == [b"raw"]
    answer = bindings.http_answer(
        func.HttpResponse("hi", status_code=201, headers={"X-A": "1"}), None, "f"
    )
    assert (answer.status, answer.body) == (201, b"hi")
    assert ("X-A", "1") in answer.headers or ("x-a", "1") in answer.headers
    assert bindings.http_answer("text", None, "f").body == b"text"
    assert json.loads(bindings.http_answer({"a": 1}, None, "f").body) == {"a": 1}


def test_out_and_context_behave_like_the_workers() -> None:
    out = bindings.Out()
    assert isinstance(out, func.Out) and out.get() is None
    out.set("v")
    assert out.get() == "v"
    context = bindings.Context("f", "/app", retry_count=2, max_retries=4)
    assert isinstance(context, func.Context)
    assert (context.function_name, context.retry_context.retry_count) == ("f", 2)
    assert len(context.invocation_id) == 36


# ---- HTTP routes ---------------------------------------------------------------------------


def _route(route: str, **trigger: Any) -> Any:
    binding = {"type": "httpTrigger", "name": "req", "route": route, **trigger}
    spec = loader.FunctionSpec(
        name="f",
        func=None,
        trigger=binding,
        bindings=[binding],
        params=[loader.Param("req", binding, None, False)],
        return_binding=None,
        requires_context=False,
        is_async=False,
    )
    return compile_route(spec, "api")


def test_route_templates_match_like_the_real_host() -> None:
    route = _route("items/{id:int}/{rest?}")
    assert route.match("/api/items/12") == {"id": "12"}
    assert route.match("/API/Items/12/more") == {"id": "12", "rest": "more"}
    assert route.match("/api/items/ab") is None
    catch_all = _route("files/{*path}")
    assert catch_all.match("/api/files/a/b/c") == {"path": "a/b/c"}
    assert _route("score", authLevel="ANONYMOUS").needs_key is False
    assert _route("score", authLevel="FUNCTION").needs_key is True


# ---- queue message text, receipts, service bus ---------------------------------------------


def test_queue_bodies_are_base64_both_ways_and_plain_text_is_accepted() -> None:
    encoded = queues.encode_body(b'{"a": 1}', True)
    assert base64.b64decode(encoded) == b'{"a": 1}'
    assert queues.decode_body(encoded, True) == b'{"a": 1}'
    assert queues.decode_body('{"a": 1}', True) == b'{"a": 1}'
    assert queues.decode_body("test", True) == b"test"  # valid base64, but not of text
    assert queues.decode_body(encoded, False) == encoded.encode()
    assert queues.encode_body(b"plain", False) == "plain"


def test_receipts_round_trip_and_leases() -> None:
    owner = Owner("1@h", utc_now())
    receipt = Receipt(PROCESSING, owner.name, owner.started, utc_now(), utc_now(), attempts=2)
    parsed = Receipt.parse(receipt.body(), "etag1")
    assert parsed.owned_by(owner) and parsed.attempts == 2 and parsed.etag == "etag1"
    assert 9 < parsed.lease_left(10) <= 10
    assert not parsed.owned_by(Owner("1@h", "2000-01-01T00:00:00.000Z"))
    damaged = Receipt.parse(b"not json", "e")
    assert damaged.state == PROCESSING and damaged.lease_left(30) < 0


def test_a_received_service_bus_message_becomes_func_servicebusmessage() -> None:
    """Built from the SDK's own AMQP encoding: no broker runs here (see servicebus.py)."""
    from azure.servicebus import ServiceBusMessage, ServiceBusReceivedMessage
    from azure.servicebus._pyamqp._encode import encode_payload
    from azure.servicebus._transport._pyamqp_transport import PyamqpTransport

    from modelform.runtime.functions.servicebus import entity, message_body, message_metadata

    sent = ServiceBusMessage(
        b'{"data": [1]}',
        application_properties={"k": "v"},
        correlation_id="c1",
        content_type="application/json",
        message_id="m1",
        subject="s",
    )
    wire = encode_payload(
        bytearray(), PyamqpTransport.to_outgoing_amqp_message(sent.raw_amqp_message)
    )
    received = ServiceBusReceivedMessage.from_bytes(bytes(wire))
    value = bindings.servicebus_value(
        message_body(received), message_metadata(received), _param("serviceBusTrigger")
    )
    assert isinstance(value, func.ServiceBusMessage)
    assert value.get_body() == b'{"data": [1]}'
    assert (value.message_id, value.correlation_id, value.content_type) == (
        "m1",
        "c1",
        "application/json",
    )
    assert value.application_properties == {"k": "v"} and value.user_properties == {"k": "v"}
    assert entity({"queueName": "q"}) == ("q", None, None)
    assert entity({"topicName": "t", "subscriptionName": "s"}) == (None, "t", "s")
    for bad in ({"queueName": "q", "topicName": "t"}, {"topicName": "t"}, {}):
        with pytest.raises(settings.SettingsError):
            entity(bad)
