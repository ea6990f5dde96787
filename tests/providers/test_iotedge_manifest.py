"""The IoT Edge deployment manifest: built in the documented format, valid by
the shipped schema (which refuses broken ones), createOptions split past
512 characters and joined back, routes parsed, the same bytes and digest
for the same inputs, and a plan's diff that names what changed."""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
from typing import Any

import jsonschema
import pytest

from modelform.engine.values import UNKNOWN
from modelform.providers import iotedge_manifest as im

SENSOR_TO_MODEL = (
    "FROM /messages/modules/sensor/outputs/rows "
    'INTO BrokeredEndpoint("/modules/diabetes/inputs/rows")'
)
MODEL_UP = "FROM /messages/modules/diabetes/outputs/predictions INTO $upstream"
RUNTIME = im.Runtime(registry_credentials=(im.RegistryCredential("acr", "x.azurecr.io", "U", "P"),))


def sensor(**kw: Any) -> im.Module:
    kw.setdefault("env", {"INTERVAL": "0.1"})
    return im.Module("sensor", "127.0.0.1:15000/sensor:1", **kw)


def model(version: int = 2, **kw: Any) -> im.Module:
    kw.setdefault("create_options", {"HostConfig": {"Memory": 536870912}})
    kw.setdefault("desired_properties", {"threshold": 0.5})
    return im.Module("diabetes", f"127.0.0.1:15000/diabetes:{version}", **kw)


def routes() -> list[im.RouteSpec]:
    return [
        im.RouteSpec("sensorToModel", SENSOR_TO_MODEL),
        im.RouteSpec("modelToUpstream", MODEL_UP, priority=0, time_to_live_secs=86400),
    ]


def build(*modules: im.Module, runtime: im.Runtime = RUNTIME) -> dict[str, Any]:
    return im.manifest(runtime, modules or (sensor(), model()), routes())


def errors_of(manifest: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft202012Validator(im.load_schema())
    return [e.message for e in validator.iter_errors(manifest)]


# -- the format -------------------------------------------------------------------
def test_the_manifest_has_the_documented_shape_and_the_schema_accepts_it() -> None:
    m = build()
    assert im.validate(m) == []
    content = m["modulesContent"]
    assert set(content) == {"$edgeAgent", "$edgeHub", "diabetes"}
    agent = content["$edgeAgent"]["properties.desired"]
    assert agent["schemaVersion"] == "1.1"
    assert agent["runtime"] == {
        "type": "docker",
        "settings": {
            "minDockerVersion": "v1.25",
            "registryCredentials": {
                "acr": {"address": "x.azurecr.io", "username": "${U}", "password": "${P}"}
            },
        },
    }
    assert agent["systemModules"]["edgeAgent"]["settings"]["image"] == im.DEFAULT_EDGE_AGENT
    hub_module = agent["systemModules"]["edgeHub"]
    assert (hub_module["status"], hub_module["restartPolicy"]) == ("running", "always")
    diabetes = agent["modules"]["diabetes"]
    assert diabetes == {
        "version": "1.0",
        "type": "docker",
        "status": "running",
        "restartPolicy": "always",
        "settings": {
            "image": "127.0.0.1:15000/diabetes:2",
            "createOptions": '{"HostConfig":{"Memory":536870912}}',
        },
    }
    assert agent["modules"]["sensor"]["env"] == {"INTERVAL": {"value": "0.1"}}
    hub = content["$edgeHub"]["properties.desired"]
    assert hub["routes"] == {
        "sensorToModel": SENSOR_TO_MODEL,
        "modelToUpstream": {"route": MODEL_UP, "priority": 0, "timeToLiveSecs": 86400},
    }
    assert hub["storeAndForwardConfiguration"] == {"timeToLiveSecs": 7200}
    assert content["diabetes"] == {"properties.desired": {"threshold": 0.5}}
    assert "sensor" not in content  # no desired properties declared: no twin written


def test_the_schema_is_a_valid_draft_2020_12_schema_that_cites_the_documentation() -> None:
    schema = im.load_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    for page in ("module-composition", "module-edgeagent-edgehub", "how-to-use-create-options"):
        assert f"https://learn.microsoft.com/azure/iot-edge/{page}" in schema["description"]


def test_a_manifest_with_only_the_runtime_is_valid() -> None:
    m = im.manifest(im.Runtime(), [], [])
    assert im.validate(m) == []
    assert m["modulesContent"]["$edgeHub"]["properties.desired"]["routes"] == {}


def _break(path: str, value: Any) -> dict[str, Any]:
    m = copy.deepcopy(build())
    *parents, last = path.split("/")
    node = m
    for p in parents:
        node = node[p]
    if value is KeyError:
        del node[last]
    else:
        node[last] = value
    return m


AGENT = "modulesContent/$edgeAgent/properties.desired"
HUB = "modulesContent/$edgeHub/properties.desired"


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("modulesContent/$edgeHub", KeyError, "'$edgeHub' is a required property"),
        (f"{AGENT}/schemaVersion", "2.0", "is not one of ['1.0', '1.1']"),
        (f"{AGENT}/runtime/type", "containerd", "'docker' was expected"),
        (f"{AGENT}/modules/diabetes/restartPolicy", "sometimes", "is not one of"),
        (f"{AGENT}/modules/diabetes/status", "paused", "is not one of"),
        (f"{AGENT}/modules/diabetes/version", KeyError, "'version' is a required property"),
        (f"{AGENT}/modules/diabetes/settings/createOptions", {"HostConfig": {}}, "is not of type"),
        (f"{AGENT}/modules/diabetes/settings/createOptions", "x" * 513, "is too long"),
        (f"{AGENT}/modules/diabetes/settings/createOptions02", "{}", "createOptions01"),
        (f"{AGENT}/modules/diabetes/settings/image", "a b", "does not match"),
        (f"{AGENT}/modules/diabetes/env", {"A": "1"}, "is not of type 'object'"),
        (f"{AGENT}/modules/diabetes/restart", "always", "Additional properties"),
        (f"{AGENT}/systemModules/edgeHub/status", "stopped", "'running' was expected"),
        (f"{AGENT}/runtime/settings/registryCredentials/acr/password", KeyError, "required"),
        (f"{HUB}/storeAndForwardConfiguration", KeyError, "required property"),
        (f"{HUB}/routes/sensorToModel", "SEND /messages/* TO $upstream", "is not valid under"),
        (f"{HUB}/routes/modelToUpstream/priority", 10, "is not valid under"),
        (f"{HUB}/routes/bad.name", MODEL_UP, "does not match"),
        ("modulesContent/diabetes/properties.desired", {"a.b": 1}, "does not match"),
        ("modulesContent/diabetes/properties.desired", {"$a": 1}, "does not match"),
    ],
)  # fmt: skip
def test_the_schema_refuses_broken_manifests(path: str, value: Any, message: str) -> None:
    found = errors_of(_break(path, value))
    assert found and any(message in e for e in found), found


def test_schema_version_1_0_refuses_what_1_1_brought() -> None:
    m = build()
    for section in ("$edgeAgent", "$edgeHub"):
        m["modulesContent"][section]["properties.desired"]["schemaVersion"] = "1.0"
    found = errors_of(m)
    assert any("startupOrder" in e for e in found), found  # edgeHub's
    assert any("is not of type 'string'" in e for e in found), found  # a route object
    with pytest.raises(im.ManifestError, match="need 1.1"):
        build(runtime=im.Runtime(schema_version="1.0"))
    with pytest.raises(im.ManifestError, match="startupOrder needs schemaVersion 1.1"):
        im.manifest(im.Runtime(schema_version="1.0"), [model(startup_order=1)], [])


def test_validate_also_joins_create_options_and_checks_twins_as_iot_hub_counts_them() -> None:
    m = build()
    settings = m["modulesContent"]["$edgeAgent"]["properties.desired"]["modules"]["sensor"][
        "settings"
    ]
    settings["createOptions"] = '{"HostConfig":'  # valid by the schema, not as JSON
    assert errors_of(m) == []
    assert any("createOptions is not JSON" in p for p in im.validate(m))
    big = im.manifest(RUNTIME, [model(desired_properties={"blob": "x" * 33_000})], [])
    assert any("past its 32768" in p for p in im.validate(big))


# -- createOptions ------------------------------------------------------------------
def long_options(n: int) -> dict[str, Any]:
    """Create options whose JSON is about ``n`` characters (ports, env, resources)."""
    env = [f"SETTING_{i}=value-{i:04d}" for i in range(n // 26)]
    return {
        "Env": env,
        "HostConfig": {"Memory": 536870912, "PortBindings": {"5000/tcp": [{"HostPort": "5000"}]}},
    }


def test_create_options_past_512_characters_round_trip_through_the_split() -> None:
    options = long_options(1500)
    parts = im.split_create_options(options)
    text = im.create_options_text(options)
    assert 1000 < len(text) <= 4096
    assert list(parts) == ["createOptions", "createOptions01", "createOptions02"]
    assert all(len(p) <= 512 for p in parts.values())
    assert [len(p) for p in parts.values()][:-1] == [512, 512]
    assert "".join(parts.values()) == text
    assert im.join_create_options(parts) == options
    m = build(sensor(create_options=options), model())
    assert im.validate(m) == []
    settings = m["modulesContent"]["$edgeAgent"]["properties.desired"]["modules"]["sensor"][
        "settings"
    ]
    assert set(settings) == {"image", "createOptions", "createOptions01", "createOptions02"}
    assert im.modules_of(m)["sensor"].create_options == options
    # Parts listed in another order join the same way (the agent sorts them).
    assert im.join_create_options(dict(reversed(list(parts.items())))) == options


def test_create_options_are_ascii_so_characters_are_bytes_and_non_ascii_round_trips() -> None:
    options = {"Labels": {"site": "Zürich – Halle 7 " * 40}}
    parts = im.split_create_options(options)
    assert len(parts) > 1
    assert all(p.isascii() and len(p.encode()) <= 512 for p in parts.values())
    assert im.join_create_options(parts) == options


def test_create_options_of_exactly_512_stay_one_part_and_past_4096_are_refused() -> None:
    base = im.create_options_text({"Env": [""]})
    exact = {"Env": ["x" * (512 - len(base))]}
    assert len(im.create_options_text(exact)) == 512
    assert list(im.split_create_options(exact)) == ["createOptions"]
    most = {"Env": ["x" * (4096 - len(base))]}
    assert len(im.split_create_options(most)) == 8
    with pytest.raises(im.ManifestError, match="at most 4096"):
        im.split_create_options({"Env": ["x" * (4097 - len(base))]})
    assert im.split_create_options({}) == {"createOptions": "{}"}
    assert im.join_create_options({"image": "a"}) == {}


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"createOptions": "{", "createOptions02": "}"}, "createOptions01 is missing"),
        ({"createOptions01": "{}"}, "without createOptions"),
        ({"createOptions": "x" * 513}, "a part holds at most 512"),
        ({"createOptions": '["a"]'}, "not a JSON object"),
        ({"createOptions": "{'Env': []}"}, "not JSON"),
        ({"createOptions": 5}, "not a string"),
    ],
)
def test_join_create_options_says_what_is_wrong(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(im.ManifestError, match=message):
        im.join_create_options(settings)


# -- routes ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "want"),
    [
        (SENSOR_TO_MODEL, ("output", "sensor", "rows", "diabetes", "rows", None)),
        (MODEL_UP, ("output", "diabetes", "predictions", None, None, None)),
        ("FROM /messages/modules/a/outputs/* INTO $upstream",
         ("output", "a", "*", None, None, None)),
        ("FROM /messages/modules/a/* INTO $upstream", ("module", "a", None, None, None, None)),
        ("FROM /messages/modules/* INTO $upstream", ("modules", None, None, None, None, None)),
        ("FROM /messages/* WHERE NOT IS_DEFINED($connectionModuleId) INTO $upstream",
         ("messages", None, None, None, None, "NOT IS_DEFINED($connectionModuleId)")),
        ("FROM /* INTO $upstream", ("all", None, None, None, None, None)),
        ("FROM /twinChangeNotifications INTO $upstream", ("twin", None, None, None, None, None)),
        ("select * from /messages/modules/a/* where $body.x = 'a INTO b' and (y > 1) "
         "into BrokeredEndpoint('/modules/b/inputs/c')",
         ("module", "a", None, "b", "c", "$body.x = 'a INTO b' and (y > 1)")),
        ('  FROM  /messages/modules/a/outputs/x   INTO '
         '  BrokeredEndpoint ( "/modules/b/inputs/y" ) ',
         ("output", "a", "x", "b", "y", None)),
    ],
)  # fmt: skip
def test_routes_parse(text: str, want: tuple[Any, ...]) -> None:
    r = im.parse_route(text)
    assert (r.kind, r.module, r.output, r.sink_module, r.sink_input, r.condition) == want
    assert r.upstream is (want[3] is None)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "a route is empty"),
        ("INTO $upstream", "starts with FROM"),
        ("FROM /messages/modules/a/outputs/x", "ends with INTO"),
        ("FROM /messages/modules/a/outputs/x INTO", "ends with INTO"),
        ("FROM /messages/modules/a INTO $upstream", "unknown source '/messages/modules/a'"),
        ("FROM /messages/modules/a/inputs/x INTO $upstream", "unknown source"),
        ("FROM /messages/modules/a/outputs/x INTO $downstream", "unknown sink '$downstream'"),
        ('FROM /messages/* INTO Endpoint("/modules/b/inputs/c")', "unknown endpoint Endpoint"),
        ('FROM /messages/* INTO BrokeredEndpoint("/modules/b/outputs/c")', "not a module input"),
        ("FROM /messages/* INTO BrokeredEndpoint(/modules/b/inputs/c)", "a quoted path"),
        ("FROM /messages/* WHERE INTO $upstream", "WHERE without a condition"),
        ("FROM /messages/* WHERE (a = 1 INTO $upstream", "a ( without its )"),
        ("FROM /messages/* WHERE a = 1) INTO $upstream", "a ) without its ("),
        ("FROM /messages/* WHERE a = 'x INTO $upstream", "unterminated string"),
        ("FROM /messages/* sometimes INTO $upstream", "a condition starts with WHERE"),
    ],
)
def test_bad_routes_say_what_is_wrong_in_one_line(text: str, message: str) -> None:
    with pytest.raises(im.RouteError, match=re.escape(message)) as e:
        im.parse_route(text)
    assert "\n" not in str(e.value)


def test_a_route_knows_which_messages_it_takes() -> None:
    exact = im.parse_route(SENSOR_TO_MODEL)
    assert exact.matches("sensor", "rows")
    assert not exact.matches("sensor", "other") and not exact.matches("other", "rows")
    anyout = im.parse_route("FROM /messages/modules/sensor/outputs/* INTO $upstream")
    assert anyout.matches("sensor", "x") and not anyout.matches("sensor", None)
    module = im.parse_route("FROM /messages/modules/sensor/* INTO $upstream")
    assert module.matches("sensor", None) and module.matches("sensor", "x")
    assert im.parse_route("FROM /messages/* INTO $upstream").matches("any", None)
    assert not im.parse_route("FROM /twinChangeNotifications INTO $upstream").matches("a", "b")


def test_the_manifest_refuses_a_bad_route_or_two_of_a_name() -> None:
    with pytest.raises(im.RouteError, match="route r: unknown sink"):
        im.manifest(RUNTIME, [], [im.RouteSpec("r", "FROM /* INTO $nowhere")])
    with pytest.raises(im.ManifestError, match="two routes named r"):
        im.manifest(RUNTIME, [], [im.RouteSpec("r", MODEL_UP), im.RouteSpec("r", MODEL_UP)])
    with pytest.raises(im.ManifestError, match="two modules named sensor"):
        im.manifest(RUNTIME, [sensor(), sensor()], [])
    with pytest.raises(im.ManifestError, match="restart policy 'sometimes'"):
        im.manifest(RUNTIME, [sensor(restart_policy="sometimes")], [])
    with pytest.raises(im.ManifestError, match="module sensor: createOptions is 4.* characters"):
        im.manifest(RUNTIME, [sensor(create_options={"Env": ["x" * 4096]})], [])
    with pytest.raises(im.ManifestError, match="known after apply"):
        im.manifest(RUNTIME, [im.Module("m", UNKNOWN)], [])  # type: ignore[arg-type]


# -- deterministic --------------------------------------------------------------------
def test_same_inputs_give_the_same_bytes_and_digest_whatever_their_order() -> None:
    a = im.manifest(RUNTIME, [sensor(), model()], routes())
    b = im.manifest(RUNTIME, [model(), sensor()], list(reversed(routes())))
    assert im.manifest_text(a) == im.manifest_text(b)
    assert im.canonical_json(a) == im.canonical_json(b)
    assert im.manifest_digest(a) == im.manifest_digest(b)
    assert im.manifest_digest(a).startswith("sha256:") and len(im.manifest_digest(a)) == 71
    assert json.loads(im.manifest_text(a)) == a
    assert im.manifest_text(a).endswith("}\n")


_IN_ANOTHER_PROCESS = """
from modelform.providers import iotedge_manifest as im
m = im.manifest(
    im.Runtime(registry_credentials=(im.RegistryCredential("acr", "x.azurecr.io", "U", "P"),)),
    [im.Module("diabetes", "r/diabetes:2", env={"B": "2", "A": "1"},
               create_options={"Z": 1, "HostConfig": {"b": 1, "a": [3, 2]}},
               desired_properties={"z": {"y": 1, "x": 2}, "a": True})],
    [im.RouteSpec("b", "FROM /* INTO $upstream"), im.RouteSpec("a", "FROM /* INTO $upstream")])
print(im.manifest_digest(m))
"""


def test_the_digest_is_the_same_in_another_process_with_another_hash_seed() -> None:
    digests = set()
    for seed in ("1", "4242"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        done = subprocess.run(
            [sys.executable, "-c", _IN_ANOTHER_PROCESS],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        digests.add(done.stdout.strip())
    assert len(digests) == 1, digests


def test_a_change_of_any_kind_changes_the_digest() -> None:
    base = im.manifest_digest(build())
    others = [
        build(sensor(), model(version=3)),
        build(sensor(), model(desired_properties={"threshold": 0.6})),
        build(sensor(env={"INTERVAL": "0.2"}), model()),
        build(runtime=im.Runtime(edge_hub="mcr.microsoft.com/azureiotedge-hub:1.4")),
    ]
    assert len({base, *(im.manifest_digest(m) for m in others)}) == 5


# -- what a plan shows -------------------------------------------------------------------
def _differing(a: Any, b: Any, path: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out: list[str] = []
        for k in sorted(set(a) | set(b)):
            out += _differing(a.get(k), b.get(k), f"{path}/{k}")
        return out
    return [] if a == b else [path]


def test_a_new_model_version_changes_only_that_modules_image_and_diff_says_so() -> None:
    before = build(sensor(), model(version=2))
    after = build(sensor(), model(version=3))
    assert _differing(before, after) == [
        "/modulesContent/$edgeAgent/properties.desired/modules/diabetes/settings/image"
    ]
    assert im.diff(before, after) == [
        "module diabetes: image 127.0.0.1:15000/diabetes:2 → 127.0.0.1:15000/diabetes:3"
    ]
    (change,) = im.changes(before, after)
    assert (change.scope, change.name, change.field) == ("module", "diabetes", "image")
    assert im.diff(after, after) == []


def test_diff_names_module_route_and_runtime_changes_without_showing_values() -> None:
    before = build()
    renamed = SENSOR_TO_MODEL.replace("inputs/rows", "inputs/input1")
    after = im.manifest(
        im.Runtime(edge_hub="mcr.microsoft.com/azureiotedge-hub:1.4"),
        [
            sensor(restart_policy="on-failure", create_options={"HostConfig": {"Memory": 1}}),
            model(desired_properties={"threshold": 0.7, "mode": {"fast": True}}, env={"K": "s"}),
            im.Module("filter", "r/filter:1"),
        ],
        [im.RouteSpec("sensorToModel", renamed)],
    )
    lines = im.diff(before, after)
    assert lines == [
        "edgeHub image: mcr.microsoft.com/azureiotedge-hub:1.5 → "
        "mcr.microsoft.com/azureiotedge-hub:1.4",
        "registry credentials acr: removed",
        "module diabetes: env changed (K)",
        "module diabetes: desired properties changed (mode, threshold)",
        "module filter: added",
        "module sensor: restart policy always → on-failure",
        "module sensor: createOptions changed (HostConfig)",
        "route modelToUpstream: removed",
        f"route sensorToModel: {SENSOR_TO_MODEL!r} → {renamed!r}",
    ]
    assert not any("0.7" in line or "'s'" in line for line in lines)
    assert im.diff(None, before) == [
        "module diabetes: added",
        "module sensor: added",
        "route modelToUpstream: added",
        "route sensorToModel: added",
    ]


def test_a_manifest_reads_back_into_what_made_it() -> None:
    mods = [sensor(image_pull_policy="never"), model(startup_order=2)]
    m = im.manifest(RUNTIME, mods, routes())
    assert im.modules_of(m) == {
        "diabetes": mods[1],
        "sensor": im.Module(
            "sensor", mods[0].image, env={"INTERVAL": "0.1"}, image_pull_policy="never"
        ),
    }
    assert im.routes_of(m) == {r.name: r for r in routes()}
    assert im.runtime_of(m) == RUNTIME
    again = im.manifest(im.runtime_of(m), im.modules_of(m).values(), im.routes_of(m).values())
    assert im.canonical_json(again) == im.canonical_json(m)


# -- credentials by reference ----------------------------------------------------------
def test_registry_credentials_are_references_filled_in_only_when_asked() -> None:
    m = build()
    text = im.manifest_text(m)
    assert "${U}" in text and "${P}" in text
    filled = im.with_credentials(m, {"U": "robot", "P": "s3cret"})
    cred = filled["modulesContent"]["$edgeAgent"]["properties.desired"]["runtime"]["settings"][
        "registryCredentials"
    ]["acr"]
    assert (cred["username"], cred["password"]) == ("robot", "s3cret")
    assert "s3cret" not in im.manifest_text(m)  # the original is untouched
    assert im.manifest_digest(m) == im.manifest_digest(build())
    with pytest.raises(im.ManifestError, match="environment variable P is not set") as e:
        im.with_credentials(m, {"U": "robot"})
    assert "robot" not in str(e.value)


def test_twin_problems_follow_iot_hubs_rules() -> None:
    assert im.twin_problems({"threshold": 0.5, "nested": {"a": [1, 2]}}) == []
    assert im.twin_problems({"a.b": 1, "c": {"$d": 1, "e f": 2}}) == [
        "key 'a.b' has '.'",
        "key 'c.$d' has '$'",
        "key 'c.e f' has a space",
    ]
    deep: dict[str, Any] = {}
    node = deep
    for _ in range(10):
        node["x"] = {}
        node = node["x"]
    assert im.twin_depth(deep) == 11
    assert im.twin_problems(deep) == ["objects nest 11 deep, past IoT Hub's 10"]
    assert im.twin_size({"ab": "cd", "n": 1, "t": True, "o": {"k": "v"}}) == 4 + 9 + 5 + 3
