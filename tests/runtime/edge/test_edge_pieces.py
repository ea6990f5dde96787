"""Pieces of the local edge hub against the real azure-iot-device SDK's own code.

SAS tokens the SDK makes are accepted (and tampered, expired or foreign
ones are not); topics the hub writes are read back by the SDK's parser;
the store holds, releases, drops duplicates and survives a restart; twin
patches are JSON merge patches with growing versions.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from modelform.runtime.edge import identities, sas
from modelform.runtime.edge.messages import Message, input_topic, parse_properties
from modelform.runtime.edge.store import Store
from modelform.runtime.edge.twins import Twins, apply_patch, merge_patch


def sdk_token(connection_string: str, ttl: int = 3600) -> str:
    from azure.iot.device.common.auth import connection_string as cs
    from azure.iot.device.common.auth import sastoken as st
    from azure.iot.device.common.auth.signing_mechanism import SymmetricKeySigningMechanism

    parts = cs.ConnectionString(connection_string)
    uri = f"{parts[cs.HOST_NAME]}/devices/{parts[cs.DEVICE_ID]}/modules/{parts[cs.MODULE_ID]}"
    mechanism = SymmetricKeySigningMechanism(parts[cs.SHARED_ACCESS_KEY])
    return str(st.RenewableSasToken(uri, mechanism, ttl=ttl))


def test_sdk_tokens_verify(tmp_path: Path) -> None:
    ids = identities.ensure(tmp_path, ["model", "sensor"], device="dev-1", gateway="127.0.0.1")
    again = identities.ensure(tmp_path, ["model", "sensor"])
    assert again.keys == ids.keys and again.device == "dev-1"  # keys are kept
    assert (tmp_path / "modules.json").stat().st_mode & 0o777 == 0o600
    text = identities.connection_string(tmp_path, "model")
    assert text.endswith(";GatewayHostName=127.0.0.1") and ";ModuleId=model;" in text
    uri = sas.resource_uri(ids.hostname, "dev-1", "model")
    token = sdk_token(text)
    assert sas.verify(token, ids.keys["model"], uri) is None
    assert sas.verify(token, ids.keys["sensor"], uri) == "bad signature"
    assert sas.verify(token, ids.keys["model"], sas.resource_uri(ids.hostname, "dev-1", "x")) == (
        "token is for another resource"
    )
    assert sas.verify(token, ids.keys["model"], uri, now=time.time() + 7200) == "token expired"
    assert sas.verify(token.replace("se=", "se=1"), ids.keys["model"], uri) == "bad signature"
    assert sas.verify("Bearer x", ids.keys["model"], uri) == "malformed token"
    assert sas.verify(token + "&skn=owner", ids.keys["model"], uri) is not None
    ours = sas.make_token(ids.keys["model"], uri, int(time.time()) + 60)
    assert sas.verify(ours, ids.keys["model"], uri) is None
    with pytest.raises(identities.IdentityError, match="no identity for module 'nope'"):
        identities.connection_string(tmp_path, "nope")


def test_topics_round_trip_through_the_sdk_parser() -> None:
    from azure.iot.device import Message as SdkMessage
    from azure.iot.device.iothub.pipeline import mqtt_topic_iothub as topics

    sent = SdkMessage(b"{}", content_encoding="utf-8", content_type="application/json")
    sent.correlation_id = "c/1&2"
    sent.message_id = "m 1"
    sent.output_name = "rows"
    sent.custom_properties = {"odd": "a&b=c%d e/f", "ünï": "ç"}
    published = topics.encode_message_properties_in_topic(
        sent, topics.get_telemetry_topic_for_publish("dev", "sensor")
    )
    prefix = "devices/dev/modules/sensor/messages/events/"
    message = Message(body=b"{}", module="sensor")
    parse_properties(published[len(prefix) :], message)
    assert message.output == "rows" and message.correlation_id == "c/1&2"
    assert message.properties == {"odd": "a&b=c%d e/f", "ünï": "ç"}

    topic = input_topic("dev", "model", "rows", message)
    received = SdkMessage(b"{}")
    topics.extract_message_properties_from_topic(topic, received)
    assert topics.is_input_topic(topic, "dev", "model")
    assert topics.get_input_name_from_topic(topic) == "rows"
    assert received.correlation_id == "c/1&2" and received.message_id == "m 1"
    assert received.content_type == "application/json" and received.content_encoding == "utf-8"
    assert received.custom_properties == {"odd": "a&b=c%d e/f", "ünï": "ç"}


def msg(key: str, module: str = "sensor", output: str = "rows") -> Message:
    return Message(body=b'{"x": 1}', module=module, output=output, correlation_id=key)


def test_store_holds_releases_drops_duplicates_and_survives_a_restart(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.open()
    first = store.hold("model", "rows", msg("a"))
    assert first is not None
    assert store.hold("model", "rows", msg("b")) is not None
    assert store.hold("model", "rows", msg("a")) is None  # already held
    assert store.hold("other", "rows", msg("a")) is not None  # another module's input
    assert store.release_key("model", "a") == 1
    assert store.hold("model", "rows", msg("a")) is None  # already done
    assert [d.key for d in store.pending("model")] == ["b"]
    assert store.upstream(msg("r1", "model", "predictions"), "up")
    assert not store.upstream(msg("r1", "model", "predictions"), "up")
    assert store.upstream(msg("r1", "model", "errors"), "up")  # another output
    store.close()

    again = Store(tmp_path)
    again.open()
    assert [(d.to, d.key) for d in again.pending("model")] == [("model", "b")]
    assert [d.key for d in again.pending("other")] == ["a"]
    assert again.pending("model")[0].message.body == b'{"x": 1}'
    assert again.hold("model", "rows", msg("a")) is None  # remembered across the restart
    assert not again.upstream(msg("r1", "model", "predictions"), "up")
    assert again.upstream_count == 2
    assert again.hold("model", "rows", msg("c")) is not None
    assert again.pending("model")[-1].seq > again.pending("model")[0].seq
    again.close()
    lines = [json.loads(x) for x in (tmp_path / "upstream.jsonl").read_text().splitlines()]
    assert [(r["correlation_id"], r["output"], r["route"]) for r in lines] == [
        ("r1", "predictions", "up"),
        ("r1", "errors", "up"),
    ]
    assert lines[0]["body"] == '{"x": 1}' and lines[0]["time"].endswith("Z")


def test_store_keeps_binary_bodies(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.open()
    binary = Message(body=b"\xff\x00", module="m", output="o", message_id="x")
    assert store.upstream(binary, "r")
    store.close()
    record = json.loads((tmp_path / "upstream.jsonl").read_text())
    assert record["body_base64"] == "/wA=" and "body" not in record


def test_twin_patches(tmp_path: Path) -> None:
    assert merge_patch({"a": 1, "b": {"c": 1, "d": 2}}, {"b": {"c": 1, "d": 3}, "e": 4}) == {
        "a": None,
        "b": {"d": 3},
        "e": 4,
    }
    assert apply_patch({"a": 1, "b": {"c": 1}}, {"a": None, "b": {"d": 2}}) == {
        "b": {"c": 1, "d": 2}
    }
    twins = Twins(tmp_path)
    twins.open()
    assert twins.set_desired({"m": {"t": 0.5}}) == {}  # a new module: nothing to push
    assert twins.set_desired({"m": {"t": 0.5}}) == {}
    assert twins.set_desired({"m": {"t": 0.7}}) == {"m": {"t": 0.7, "$version": 2}}
    assert twins.patch_reported("m", {"seen": 2}) == 2
    reopened = Twins(tmp_path)
    reopened.open()
    assert reopened.document("m") == {
        "desired": {"t": 0.7, "$version": 2},
        "reported": {"seen": 2, "$version": 2},
    }
