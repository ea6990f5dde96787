"""The local edge hub end to end: the real hub process, modules on the real azure-iot-device SDK.

A sensor module's messages are routed to the model module's input and its
results to ``$upstream``; none lost or duplicated, matched by correlation
id, also when the model is killed (-9) mid-stream; bad CONNECTs are
refused while the running module keeps receiving; desired-property
changes in the manifest reach the running module without a reconnect; a
sensor faster than its model is paced to it (``--pace``), and a model that
stops answering does not stop the sensor.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest
from edge_harness import (
    DEVICE,
    HOST,
    ROUTES,
    EdgeRun,
    manifest,
    percentile,
    read_lines,
    wait_for,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

MODULES = ["diabetes", "sensor"]
DESIRED = {"diabetes": {"threshold": 0.5, "labels": {"low": "a"}}}


def start(edge: EdgeRun, *options: str) -> None:
    edge.write_manifest(manifest(MODULES, ROUTES, DESIRED))
    edge.start_hub(*options)


def start_model(edge: EdgeRun, connects: int = 1, **env: str) -> subprocess.Popen[bytes]:
    process = edge.start_module(
        "model.py",
        "diabetes",
        RUNLOG=str(edge.root / "run.log"),
        TWINLOG=str(edge.root / "twin.log"),
        **env,
    )
    edge.wait_ready("diabetes", connects)

    def started() -> bool:  # the model's last start-up step: it reports its pid
        try:
            twins = json.loads((edge.state / "twins.json").read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return False
        return bool(twins.get("diabetes", {}).get("reported", {}).get("pid") == process.pid)

    wait_for(started, 30, "the model's start-up")
    return process


def send(edge: EdgeRun, count: int, prefix: str, **env: str) -> subprocess.Popen[bytes]:
    return edge.start_module("sensor.py", "sensor", COUNT=str(count), PREFIX=prefix, **env)


def runs(edge: EdgeRun) -> Counter[str]:
    return Counter(line.split()[0] for line in read_lines(edge.root / "run.log"))


def by_correlation(records: list[dict]) -> Counter[str]:
    return Counter(r["correlation_id"] for r in records)


def test_sensor_to_model_to_upstream_1000_messages(edge: EdgeRun) -> None:
    start(edge)
    start_model(edge)
    sensor = send(edge, 1000, "m", FAIL_EVERY="100")
    assert sensor.wait(120) == 0

    records = wait_for(
        lambda: len(edge.upstream()) >= 1000 and edge.upstream(), 60, "1000 upstream"
    )
    time.sleep(0.5)
    records = edge.upstream()
    counts = by_correlation(records)
    assert len(records) == 1000
    assert set(counts) == {f"m-{i}" for i in range(1000)}
    assert max(counts.values()) == 1
    for record in records:
        i = int(record["correlation_id"].split("-")[1])
        assert record["module"] == "diabetes"
        assert record["properties"]["odd"] == "a&b=c%d e"
        assert record["content_type"] == "application/json"
        if i % 100 == 0:
            assert (record["output"], record["route"]) == ("errors", "errorsToUpstream")
        else:
            assert (record["output"], record["route"]) == ("predictions", "modelToUpstream")
            assert json.loads(record["body"]) == {"prediction": i + 0.75}
    # Nothing redelivered on a healthy run; nothing left held.
    assert max(runs(edge).values()) == 1
    status = wait_for(lambda: (s := edge.status())["held"] == 0 and s, 10, "nothing held")
    assert status["counts"]["upstream"] == 1000
    assert status["counts"]["duplicates"] == 0

    latencies = [
        r["epoch"] * 1000 - int(r["properties"]["sent_ns"]) / 1e6
        for r in records
        if r["output"] == "predictions"
    ]
    rss_kb = edge.hub_rss_kb("VmHWM")
    print(
        f"\nedge hub, 1000 messages sensor -> model -> upstream: "
        f"p50 {percentile(latencies, 0.5):.1f} ms, p99 {percentile(latencies, 0.99):.1f} ms, "
        f"hub peak RSS {rss_kb / 1024:.1f} MB"
    )
    assert rss_kb <= 40 * 1024, f"hub peak RSS {rss_kb} kB above the 40 MB goal"

    # SIGTERM with modules connected: a clean stop.
    assert edge.stop_hub() == 0
    assert edge.status()["state"] == "stopped"
    assert '"event":"stopped"' in edge.hub_log.read_text()


def test_model_killed_mid_stream_every_message_upstream_once(edge: EdgeRun) -> None:
    # No flow control: the sensor runs ahead of the model, as it can against a hub that does
    # not pace it, so the model's SDK has acknowledged many messages it never ran.
    start(edge, "--pace", "0")
    # A slow model: its SDK acknowledges messages that wait in its inbox for a handler thread.
    model = start_model(edge, SLOW_MS="25")
    sensor = send(edge, 1000, "k")
    wait_for(lambda: sum(runs(edge).values()) >= 300, 60, "300 messages processed")
    os.killpg(model.pid, signal.SIGKILL)
    model.wait(10)
    processed_before = sum(runs(edge).values())
    wait_for(lambda: not edge.module_status("diabetes")["connected"], 30, "the kill noticed")
    time.sleep(0.6)  # the status file is rewritten every 0.5 s
    at_kill = edge.module_status("diabetes")
    # The killed model had acknowledged messages it never ran: the hub still holds them.
    assert at_kill["delivered"] > processed_before
    assert at_kill["held"] > 0

    start_model(edge, connects=2)
    assert sensor.wait(120) == 0
    wait_for(lambda: len(edge.upstream()) >= 1000, 60, "1000 upstream")
    wait_for(lambda: edge.status()["held"] == 0, 30, "nothing held")
    time.sleep(0.5)
    counts = by_correlation(edge.upstream())
    assert set(counts) == {f"k-{i}" for i in range(1000)}
    assert max(counts.values()) == 1, [k for k, n in counts.items() if n > 1]
    processed = runs(edge)
    assert set(processed) == set(counts)
    print(
        f"\nkill -9 mid-stream: {processed_before} processed before the kill, "
        f"{at_kill['delivered']} acknowledged by the model, {at_kill['held']} held; "
        f"{sum(n - 1 for n in processed.values())} processed twice, "
        f"{edge.status()['counts']['duplicates']} duplicates dropped"
    )


def test_a_faster_sensor_is_paced_to_its_model(edge: EdgeRun) -> None:
    from modelform.runtime.edge.hub import DEFAULT_PACE

    start(edge)
    # 4 handler threads x 20 ms: at most 200 messages/s, less than the sensor sends.
    start_model(edge, SLOW_MS="20")
    sensor = send(edge, 400, "p")
    held = []
    while sensor.poll() is None:
        held.append(edge.module_status("diabetes").get("held", 0))
        time.sleep(0.1)
    assert sensor.returncode == 0
    wait_for(lambda: len(edge.upstream()) >= 400, 60, "400 upstream")
    status = wait_for(lambda: (s := edge.status())["held"] == 0 and s, 10, "nothing held")
    assert by_correlation(edge.upstream()) == Counter({f"p-{i}": 1 for i in range(400)})
    assert status["counts"]["paced"] > 0 and status["counts"]["stalls"] == 0
    # The sensor sends one message at a time: the one that made it wait, and no more.
    assert len(held) >= 5 and max(held) <= DEFAULT_PACE + 1, held


def test_a_stalled_model_does_not_stop_the_sensor(edge: EdgeRun) -> None:
    start(edge)
    start_model(edge, SLOW_MS="5000")  # every handler thread busy for 5 s
    started = time.monotonic()
    assert send(edge, 30, "s").wait(60) == 0
    # Without the stall rule each message past the pace would wait ~1.25 s for a result.
    assert time.monotonic() - started < 15
    status = wait_for(lambda: (s := edge.status())["held"] >= 26 and s, 10, "held")
    assert status["counts"]["stalls"] >= 1
    assert '"event":"module_stalled"' in edge.hub_log.read_text()


def test_bad_connects_refused_running_module_keeps_receiving(edge: EdgeRun) -> None:
    from azure.iot.device import IoTHubModuleClient
    from azure.iot.device.exceptions import ClientError

    from modelform.runtime.edge import sas

    start(edge)
    start_model(edge)
    ca = (edge.state / "ca.pem").read_text()
    good = edge.connection_string("diabetes")
    fields = dict(part.split("=", 1) for part in good.split(";"))
    hostname = fields["HostName"]

    def refused_by_sdk(client: IoTHubModuleClient) -> None:
        try:
            with pytest.raises(ClientError):
                client.connect()
        finally:
            client.shutdown()

    # A wrong key for the running module's own client id.
    other_key = edge.connection_string("sensor").split("SharedAccessKey=")[1].split(";")[0]
    wrong = good.replace(fields["SharedAccessKey"], other_key)
    refused_by_sdk(
        IoTHubModuleClient.create_from_connection_string(
            wrong, server_verification_cert=ca, connection_retry=False
        )
    )
    # An expired token (validly signed) for the running module.
    uri = sas.resource_uri(hostname, DEVICE, "diabetes")
    token = sas.make_token(fields["SharedAccessKey"], uri, int(time.time()) + 2)
    expiring = IoTHubModuleClient.create_from_sastoken(
        token, gateway_hostname=HOST, server_verification_cert=ca, connection_retry=False
    )
    time.sleep(3)
    refused_by_sdk(expiring)
    # Another module's valid credentials presented with the running module's client id.
    sensor_key = other_key
    sensor_token = sas.make_token(
        sensor_key, sas.resource_uri(hostname, DEVICE, "sensor"), int(time.time()) + 3600
    )
    for username in (
        f"{hostname}/{DEVICE}/sensor/?api-version=2019-10-01",
        f"{hostname}/{DEVICE}/diabetes/?api-version=2019-10-01",
    ):
        assert paho_connect(edge, f"{DEVICE}/diabetes", username, sensor_token) == 5

    status = wait_for(
        lambda: (s := edge.status())["counts"]["refused"] >= 4 and s, 10, "4 refusals"
    )
    assert status["counts"]["refused"] == 4
    assert status["modules"]["diabetes"]["connected"]
    assert status["modules"]["diabetes"]["connects"] == 1
    # The running module still receives: messages reach upstream through it.
    assert send(edge, 50, "after").wait(60) == 0
    wait_for(lambda: len(edge.upstream()) >= 50, 30, "50 upstream after the refusals")
    assert set(by_correlation(edge.upstream())) == {f"after-{i}" for i in range(50)}
    assert edge.module_status("diabetes")["connects"] == 1
    log = edge.hub_log.read_text()
    assert log.count('"event":"connect_refused"') == 4
    assert "bad signature" in log and "token expired" in log


def paho_connect(edge: EdgeRun, client_id: str, username: str, password: str) -> int:
    """CONNECT with paho (the SDK's MQTT client) and return the CONNACK code."""
    import ssl

    from paho.mqtt import client as mqtt

    result: list[int] = []
    client = mqtt.Client(client_id=client_id, clean_session=False, protocol=mqtt.MQTTv311)
    client.username_pw_set(username, password)
    context = ssl.create_default_context(cafile=str(edge.state / "ca.pem"))
    client.tls_set_context(context)
    client.on_connect = lambda c, u, flags, rc: result.append(rc)
    client.connect(HOST, 8883, keepalive=30)
    deadline = time.monotonic() + 10
    while not result and time.monotonic() < deadline:
        client.loop(timeout=0.1)
    client.disconnect()
    assert result, "no CONNACK"
    return result[0]


def test_twin_desired_patch_reaches_running_module_without_reconnect(edge: EdgeRun) -> None:
    start(edge)
    model = start_model(edge)
    twin_log = edge.root / "twin.log"
    first = wait_for(lambda: read_lines(twin_log), 30, "the model's twin")
    twin = json.loads(first[0])["twin"]
    assert twin["desired"] == {"threshold": 0.5, "labels": {"low": "a"}, "$version": 1}

    edge.write_manifest(
        manifest(MODULES, ROUTES, {"diabetes": {"threshold": 0.7, "labels": {"high": "b"}}})
    )
    assert edge.hub is not None
    edge.hub.send_signal(signal.SIGHUP)
    patches = wait_for(
        lambda: [json.loads(x) for x in read_lines(twin_log) if '"patch"' in x], 30, "a patch"
    )
    assert patches[0] == {
        "pid": model.pid,
        "patch": {"threshold": 0.7, "labels": {"low": None, "high": "b"}, "$version": 2},
    }
    status = edge.module_status("diabetes")
    assert status["connected"] and status["connects"] == 1
    assert model.poll() is None
    # The twin the hub keeps follows (a restarted module reads this).
    twins = json.loads((edge.state / "twins.json").read_text())
    assert twins["diabetes"]["desired"] == {"threshold": 0.7, "labels": {"high": "b"}}
    assert twins["diabetes"]["desired_version"] == 2
    assert twins["diabetes"]["reported"] == {"pid": model.pid}  # the module's own patch


def test_hub_exits_with_one_line_errors(tmp_path: Path) -> None:
    import socket
    import sys

    bad = tmp_path / "bad.json"
    routes = {"r": 'FROM /messages/modules/nosuch/* INTO BrokeredEndpoint("/modules/a/inputs/x")'}
    bad.write_text(json.dumps(manifest(["a"], routes)))
    base = [sys.executable, "-m", "modelform.runtime.edge.hub", "--state-dir", str(tmp_path / "s")]
    done = subprocess.run(
        [*base, "--manifest", str(bad)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "unknown module 'nosuch'" in last
    assert "Traceback" not in done.stderr

    good = tmp_path / "good.json"
    good.write_text(json.dumps(manifest(["a"], {})))
    with socket.socket() as taken:
        taken.bind((HOST, 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [*base, "--manifest", str(good), "--host", HOST, "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1].startswith(f"error: cannot listen on {HOST}:{port}")


def test_duplicates_dropped_and_held_messages_survive_a_hub_restart(edge: EdgeRun) -> None:
    start(edge)
    assert send(edge, 20, "h").wait(60) == 0  # no model yet: all held
    assert send(edge, 20, "h").wait(60) == 0  # the same correlation ids again
    status = wait_for(
        lambda: (s := edge.status())["counts"]["duplicates"] >= 20 and s, 10, "20 duplicates"
    )
    assert status["held"] == 20 and status["counts"]["duplicates"] == 20
    assert edge.stop_hub() == 0

    edge.start_hub()
    assert edge.status()["held"] == 20
    start_model(edge)
    wait_for(lambda: len(edge.upstream()) >= 20, 60, "20 upstream")
    wait_for(lambda: edge.status()["held"] == 0, 30, "nothing held")
    assert send(edge, 20, "h").wait(60) == 0  # done ones are remembered too
    time.sleep(1)
    assert by_correlation(edge.upstream()) == Counter({f"h-{i}": 1 for i in range(20)})
    assert runs(edge) == Counter({f"h-{i}": 1 for i in range(20)})
