"""How the blob trigger finds blobs: MinIO's event stream, and listings spaced by their cost.

Real MinIO and real host processes (``functions_harness``); the host's
``/admin/host/status`` tells per trigger how many listings it made, what the
stream and the listings found, and how many requests its S3 client sent.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from functions_harness import BLOB_APP, Host, HostFactory, run_counts, write_app
from storage_kit import S3Kit

from modelform.runtime import logs
from modelform.runtime.functions.discovery import DUTY, QUIET_S, ListingSchedule
from modelform.runtime.functions.s3listen import EventStream
from modelform.runtime.functions.settings import S3Storage
from modelform.runtime.functions.stores import BlobEntry, S3Store

# ---- the schedule (no storage) -------------------------------------------------------------


def test_listings_are_spaced_by_their_cost_between_the_poll_and_the_longest_interval() -> None:
    schedule = ListingSchedule(poll_seconds=0.5, longest=300, duty=DUTY)
    assert schedule.due(0.0, 0.0) == "asked"  # the start listing
    schedule.started(0.0)
    schedule.finished(0.002)  # a small prefix: every poll, as before
    assert schedule.interval() == 0.5
    assert schedule.due(0.4, 0.0) is None and schedule.due(0.5, 0.0) == "interval"
    schedule.started(1.0)
    schedule.finished(0.2)  # smoothed: (0.002 + 0.2) / 2
    assert schedule.interval() == pytest.approx(0.101 / DUTY)
    assert schedule.due(1.0 + 5.0, 0.0) is None
    assert schedule.due(1.0 + 0.101 / DUTY, 0.0) == "interval"
    for _ in range(20):
        schedule.finished(60.0)
    assert schedule.interval() == 300  # the longest
    schedule.ask()
    assert schedule.due(1.1, 0.0) == "asked"


def test_a_listing_follows_the_stream_falling_quiet_at_most_once_per_its_cost() -> None:
    schedule = ListingSchedule(poll_seconds=0.5, duty=DUTY)
    schedule.started(0.0)
    schedule.finished(0.05)  # interval 2.5 s; after a quiet stream at most every 0.5 s
    assert schedule.due(0.2, 0.1) is None  # events still coming
    assert schedule.due(0.1 + QUIET_S, 0.1) is None  # quiet, but the last listing is too recent
    assert schedule.due(1.0, 0.6) == "quiet"
    schedule.started(1.0)
    assert schedule.due(1.9, 0.6) is None  # nothing told since that listing


# ---- the stream, in this process ------------------------------------------------------------


@pytest.fixture
def store(s3_endpoint: Any, monkeypatch: pytest.MonkeyPatch) -> S3Store:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_endpoint.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_endpoint.secret_key)
    return S3Store(S3Storage(s3_endpoint.url, s3_endpoint.region, True))


def _wait(what: str, check: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.05)


def _put_all(kit: S3Kit, names: list[str], threads: int = 8) -> dict[str, str]:
    """Upload ``input/<name>.json`` for each name; their ETags (MD5) by key."""
    bodies = {f"input/{n}.json": json.dumps({"data": [len(n), 1], "n": n}).encode() for n in names}
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda item: kit.put(*item), bodies.items()))
    return {key: hashlib.md5(body).hexdigest() for key, body in bodies.items()}


@pytest.mark.s3
def test_the_stream_tells_of_created_blobs_under_its_prefix_and_each_reconnect(
    store: S3Store, s3_endpoint: Any, s3_bucket: str, tmp_path: Path
) -> None:
    kit = S3Kit(s3_endpoint, s3_bucket)
    told: list[BlobEntry] = []
    connects: list[float] = []
    with (tmp_path / "stream.log").open("wb") as log_file:
        stream = EventStream(
            store.http,
            s3_bucket,
            "input/",
            told.append,
            lambda: connects.append(time.monotonic()),
            logs.JsonLog(log_file.fileno()),
            "score",
        )
        stream.start()
        try:
            _wait("the request is out", lambda: len(connects) == 1, 10)
            time.sleep(0.5)  # MinIO subscribes as it reads the request
            expected = _put_all(kit, [f"a-{i:02d}" for i in range(40)])
            kit.put("other/ignored.json", b"{}")
            # MinIO sends the stream in 4 KB chunks: the last few may wait for more events.
            _wait("most of 40 events", lambda: len(told) >= 30, 15)
            assert stream.supported is True
            assert {e.name: e.etag for e in told}.items() <= expected.items()
            assert all(e.name.startswith("input/") for e in told)

            stream.disconnect()  # a dropped connection: the stream opens a new request
            _wait("a second request", lambda: len(connects) == 2, 10)
            time.sleep(0.5)
            before = len(told)
            more = _put_all(kit, [f"b-{i:02d}" for i in range(40)])
            _wait("events after the reconnect", lambda: len(told) >= before + 30, 15)
            assert {e.name: e.etag for e in told[before:]}.items() <= {**expected, **more}.items()
        finally:
            stream.stop()


# ---- the host ----------------------------------------------------------------------------


@pytest.fixture
def kit(s3_endpoint: Any, s3_bucket: str) -> S3Kit:
    return S3Kit(s3_endpoint, s3_bucket)


@pytest.fixture
def host_id(kit: S3Kit) -> Iterator[str]:
    name = f"t-{uuid.uuid4().hex[:10]}"
    yield name
    kit.cleanup(name, "score")


def _discovery(host: Host) -> dict[str, Any]:
    return dict(host.status()["triggers"]["score"]["discovery"])


def _outputs(kit: S3Kit, count: int, timeout: float, host: Host) -> int:
    deadline = time.monotonic() + timeout
    while True:
        found = len(kit.listing("output/"))
        if found >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def _start(hosts: HostFactory, tmp_path: Path, kit: S3Kit, host_id: str, *args: str) -> Host:
    runlog = tmp_path / "runs.log"
    app_dir = write_app(tmp_path / "app", BLOB_APP)
    return hosts.start(app_dir, {**kit.env, "RUNLOG": str(runlog)}, "--host-id", host_id, *args)


@pytest.mark.s3
def test_blobs_told_by_the_stream_run_without_a_listing_and_the_tail_is_listed_later(
    kit: S3Kit, host_id: str, tmp_path: Path, hosts: HostFactory
) -> None:
    # Listings at most every 30 s: whatever runs sooner was told by the stream.
    host = _start(hosts, tmp_path, kit, host_id, "--poll-seconds", "30", "--lease-seconds", "60")
    time.sleep(1.0)  # the stream's request is out
    start = _discovery(host)
    assert start["event_stream"] in ("connecting", "connected"), start
    names = [f"ev-{i:03d}" for i in range(60)]
    _put_all(kit, names)
    assert _outputs(kit, 50, 20, host) >= 50, host.log()[-3000:]
    early = _discovery(host)
    assert early["listings"] == start["listings"], (start, early)
    assert early["found"]["listing"] == 0 and early["found"]["event"] >= 50, early
    # Events MinIO held back are found by the next listing (30 s at the latest).
    assert _outputs(kit, 60, 45, host) == 60, host.log()[-3000:]
    final = _discovery(host)
    assert final["found"]["event"] + final["found"]["listing"] == 60, final
    runs = run_counts(tmp_path / "runs.log")
    assert len(runs) == 60 and set(runs.values()) == {1}, runs.most_common(3)


def _host_sockets_to(port: int, pid: int) -> list[str]:
    """Local ports of ``pid``'s TCP connections to 127.0.0.1:``port``."""
    shown = subprocess.run(
        ["ss", "-tnpH", f"dport = :{port}"], capture_output=True, text=True, check=True
    ).stdout
    return [
        m.group(1)
        for line in shown.splitlines()
        if f"pid={pid}," in line and (m := re.search(r"127\.0\.0\.1:(\d+)\s", line))
    ]


@pytest.mark.s3
def test_a_blob_uploaded_while_the_stream_was_cut_is_found_by_the_listing_after_it(
    kit: S3Kit, host_id: str, tmp_path: Path, hosts: HostFactory, s3_endpoint: Any
) -> None:
    host = _start(hosts, tmp_path, kit, host_id, "--poll-seconds", "30", "--lease-seconds", "60")
    time.sleep(1.0)
    _put_all(kit, [f"warm-{i:02d}" for i in range(30)])
    assert _outputs(kit, 20, 20, host) >= 20  # the stream tells
    before = _discovery(host)
    port = int(s3_endpoint.url.rsplit(":", 1)[1])
    cut = _host_sockets_to(port, host.proc.pid)
    assert cut, "the host has no connection to MinIO"
    for local in cut:  # the stream's request and the workers' kept-alive connections
        subprocess.run(["ss", "-K", "-tn", f"sport = :{local}"], capture_output=True, check=True)
    kit.put("input/gap.json", json.dumps({"data": [1, 2]}).encode())
    deadline = time.monotonic() + 10  # far below the 30 s between listings
    while "output/gap_out.json" not in kit.listing("output/"):
        assert time.monotonic() < deadline, host.log()[-3000:]
        time.sleep(0.1)
    after = _discovery(host)
    assert after["listings"] > before["listings"], (before, after)
    assert host.events("event_stream_lost"), host.log()[-2000:]
    assert run_counts(tmp_path / "runs.log")[f"{kit.container}/input/gap.json"] == 1


@pytest.mark.s3
def test_an_idle_host_with_many_processed_blobs_does_not_list_them_every_poll(
    kit: S3Kit, host_id: str, tmp_path: Path, hosts: HostFactory
) -> None:
    _put_all(kit, [f"old-{i:04d}" for i in range(1000)], threads=16)
    host = _start(hosts, tmp_path, kit, host_id, "--poll-seconds", "0.1")
    assert _outputs(kit, 1000, 120, host) == 1000, host.log()[-3000:]
    time.sleep(1.0)  # the last receipts written
    before = _discovery(host)
    time.sleep(5.0)
    after = _discovery(host)
    listings = after["listings"] - before["listings"]
    requests = after["storage_requests"] - before["storage_requests"]
    # 50 polls in 5 s; a listing of 1,000 keys costs some 10-100 ms, so it comes
    # every 0.5-5 s.
    assert after["listing_interval_s"] >= after["listing_cost_s"] / DUTY * 0.99, after
    assert listings <= 5.0 / max(after["listing_interval_s"] * 0.8, 0.1) + 1, (before, after)
    assert listings <= 12, (before, after)
    assert requests <= listings, (before, after)  # idle: a 1,000-key listing is one request


@pytest.mark.azurite
def test_an_endpoint_without_the_stream_is_polled_only(azurite: str, tmp_path: Path) -> None:
    """Azurite's blob port speaks no S3 and has no notification stream: the stream says
    so once and ends, as it does on AWS S3 (which answers the request with a listing)."""
    from botocore.credentials import Credentials

    from modelform.runtime.functions.s3http import S3Http

    blob_port = re.search(r"BlobEndpoint=http://127\.0\.0\.1:(\d+)", azurite)
    assert blob_port is not None
    client = S3Http(
        f"http://127.0.0.1:{blob_port.group(1)}", "us-east-1", True, Credentials("k", "s")
    )
    connects: list[int] = []
    with (tmp_path / "stream.log").open("wb") as log_file:
        stream = EventStream(
            client,
            "nocontainer",
            "input/",
            lambda entry: pytest.fail(f"told of {entry}"),
            lambda: connects.append(1),
            logs.JsonLog(log_file.fileno()),
            "score",
        )
        stream.start()
        _wait("the stream gives up", lambda: stream.supported is False, 10)
        stream._thread.join(5)
        assert not stream._thread.is_alive() and connects == [1]
    assert "no_event_stream" in (tmp_path / "stream.log").read_text()
