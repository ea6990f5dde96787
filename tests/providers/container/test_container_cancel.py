"""Ctrl-C during an image build, without a Docker Engine: waiting for build
output, or for another build holding the engine, goes through the
context's sleep, so an interrupt ends it at once and the engine's build lock
is free again."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker.errors
import pytest

from modelform.plugin import Cancelled
from modelform.providers import imagebuild as ib


class _Images:
    def get(self, ref: str) -> Any:
        raise docker.errors.ImageNotFound(f"no image {ref}")


class _Api:
    def __init__(self, started: threading.Event, release: threading.Event) -> None:
        self.base_url = f"http+docker://fake-{id(self)}"
        self.started, self.release = started, release

    def build(self, **kwargs: Any) -> Iterator[dict[str, Any]]:
        yield {"stream": "Step 1/9 : FROM base:1\n"}
        self.started.set()
        self.release.wait(30)  # a silent step (pip install) until the test ends
        yield {"stream": "never read\n"}


class _Client:
    def __init__(self) -> None:
        self.started, self.release = threading.Event(), threading.Event()
        self.api = _Api(self.started, self.release)
        self.images = _Images()


def _spec(tmp_path: Path) -> ib.ImageSpec:
    src = tmp_path / "src"
    src.mkdir()
    (src / "score.py").write_text("def init(): pass\ndef run(d): return d\n")
    return ib.ImageSpec(
        repository="p/svc", base_image="base:1", requirements=(), source_dir=src,
        entry_script=src / "score.py", code_digest="sha256:c",
    )  # fmt: skip


def _interrupt_when(event: threading.Event) -> Any:
    def sleep(seconds: float) -> None:
        if event.is_set():
            raise Cancelled("service.svc: interrupted")
        time.sleep(min(seconds, 0.05))

    return sleep


def test_an_interrupt_ends_a_silent_build_step_at_once(tmp_path: Path) -> None:
    client = _Client()
    lines: list[str] = []
    t0 = time.monotonic()
    try:
        with pytest.raises(Cancelled):
            ib.build(client, _spec(tmp_path), lines.append, sleep=_interrupt_when(client.started))
        assert time.monotonic() - t0 < 5  # not the 30 s the step stays silent
        assert "Step 1/9 : FROM base:1" in lines
        lock = ib._host_lock(client)
        assert lock.acquire(blocking=False)  # released for the next build
        lock.release()
    finally:
        client.release.set()


def test_an_interrupt_ends_the_wait_for_another_build(tmp_path: Path) -> None:
    client = _Client()
    interrupted = threading.Event()
    lock = ib._host_lock(client)
    lock.acquire()  # another service is building on this engine
    try:
        interrupted.set()
        with pytest.raises(Cancelled):
            ib.build(client, _spec(tmp_path), sleep=_interrupt_when(interrupted))
        assert not client.started.is_set()  # it never got to build
    finally:
        lock.release()
        client.release.set()
