"""What the hub keeps on disk: held deliveries (``held.jsonl``) and upstream (``upstream.jsonl``).

Exactly once upstream, although the SDK acknowledges a message before
its handler runs (a module killed mid-stream has acknowledged messages it
never processed):

- a message routed to a module's input is *held*: journaled before the
  sender's PUBACK, and kept until that module sends any output carrying
  the same key (correlation id, else message id) — its result or its
  error. A module that no route reads from is released at its PUBACK
  (it has no result to wait for);
- when a module (re)connects, everything held for it is delivered again,
  in the order it arrived;
- a second message with a key already held or already done for the same
  module input, or already stored upstream from the same module output,
  is dropped.

``held.jsonl`` lines: ``{"op": "hold", "seq": n, "to": m, "input": i,
"key": k, "message": {...}, "body": base64}`` and ``{"op": "done", "seq":
n}``; replayed at start and compacted (rewritten with what is still held
and the recent keys) at start and every ``COMPACT_EVERY`` releases.

``upstream.jsonl`` lines (the inspectable store)::

    {"time": "<UTC ISO 8601>", "epoch": <seconds, float>, "route": "<name>",
     "module": "<source>", "output": "<source output>",
     "correlation_id": …, "message_id": …, "content_type": …, "content_encoding": …,
     "properties": {…}, "body": "<UTF-8 text>"}      # or "body_base64" when not UTF-8
"""

from __future__ import annotations

import base64
import os
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelform.runtime.edge.files import JsonLines, read_lines
from modelform.runtime.edge.messages import Message

HELD = "held.jsonl"
UPSTREAM = "upstream.jsonl"
#: Keys remembered per module input / module output for dropping duplicates.
DEDUP_WINDOW = 200_000
COMPACT_EVERY = 50_000


@dataclass
class Delivery:
    seq: int
    to: str
    input: str
    key: str
    message: Message
    #: Connection generation of ``to`` it was last sent on (0: never sent).
    sent_on: int = 0


class _Window:
    """An insertion-ordered set of at most ``size`` keys."""

    def __init__(self, size: int = DEDUP_WINDOW) -> None:
        self.size = size
        self._keys: OrderedDict[str, None] = OrderedDict()

    def __contains__(self, key: str) -> bool:
        return key in self._keys

    def add(self, key: str) -> None:
        self._keys[key] = None
        if len(self._keys) > self.size:
            self._keys.popitem(last=False)

    def __iter__(self) -> Any:
        return iter(self._keys)


class Store:
    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        #: module -> seq -> delivery, in arrival order.
        self.held: dict[str, dict[int, Delivery]] = {}
        #: module -> key -> seqs held with that key.
        self._by_key: dict[str, dict[str, list[int]]] = {}
        #: (module, input) -> keys held or done.
        self._delivered: dict[tuple[str, str], _Window] = {}
        #: (module, output) -> keys stored upstream.
        self._upstream: dict[tuple[str, str], _Window] = {}
        self.upstream_count = 0
        self._seq = 0
        self._released_since_compact = 0
        self._journal: JsonLines | None = None
        self._upstream_log: JsonLines | None = None

    # ---- start -------------------------------------------------------------------------

    def open(self) -> None:
        self._replay()
        self._compact()
        for record in read_lines(self.state_dir / UPSTREAM):
            key = record.get("correlation_id") or record.get("message_id")
            if key:
                self._window(self._upstream, (record["module"], record.get("output") or "")).add(
                    key
                )
            self.upstream_count += 1
        self._upstream_log = JsonLines(self.state_dir / UPSTREAM)

    def _replay(self) -> None:
        for record in read_lines(self.state_dir / HELD):
            op = record.get("op")
            if op == "hold":
                body = base64.b64decode(record["body"])
                delivery = Delivery(
                    seq=int(record["seq"]),
                    to=record["to"],
                    input=record["input"],
                    key=record["key"],
                    message=Message.from_record(record["message"], body),
                )
                self._add(delivery)
                self._seq = max(self._seq, delivery.seq)
            elif op == "done":
                self._remove(int(record["seq"]))
            elif op == "seen":
                self._window(self._delivered, (record["to"], record["input"])).add(record["key"])

    def _compact(self) -> None:
        path = self.state_dir / HELD
        temporary = path.with_name(f".{HELD}.tmp")
        temporary.unlink(missing_ok=True)
        log = JsonLines(temporary)
        held_keys = {(d.to, d.input, d.key) for m in self.held.values() for d in m.values()}
        for (to, input_name), window in self._delivered.items():
            for key in window:
                if (to, input_name, key) not in held_keys:
                    log.append({"op": "seen", "to": to, "input": input_name, "key": key})
        for module in self.held.values():
            for delivery in module.values():
                log.append(_hold_record(delivery))
        log.close()
        if self._journal is not None:
            self._journal.close()
        os.replace(temporary, path)
        self._journal = JsonLines(path)
        self._released_since_compact = 0

    def close(self) -> None:
        for log in (self._journal, self._upstream_log):
            if log is not None:
                log.close()

    # ---- deliveries ----------------------------------------------------------------------

    def hold(self, to: str, input_name: str, message: Message) -> Delivery | None:
        """Hold ``message`` for ``to``'s input (None: a duplicate, dropped)."""
        key = message.key
        if key in self._window(self._delivered, (to, input_name)):
            return None
        delivery = Delivery(seq=self._seq + 1, to=to, input=input_name, key=key, message=message)
        assert self._journal is not None
        self._journal.append(_hold_record(delivery))  # first: a failed write leaves no trace
        self._seq += 1
        self._add(delivery)
        return delivery

    def release_key(self, module: str, key: str) -> int:
        """A result of ``module`` with ``key`` came back: release what was held for it."""
        seqs = self._by_key.get(module, {}).get(key)
        if not seqs:
            return 0
        released = 0
        for seq in list(seqs):
            released += self.release(module, seq)
        return released

    def release(self, module: str, seq: int) -> int:
        delivery = self.held.get(module, {}).get(seq)
        if delivery is None:
            return 0
        assert self._journal is not None
        self._journal.append({"op": "done", "seq": seq})
        self._remove(seq, module)
        self._released_since_compact += 1
        if self._released_since_compact >= COMPACT_EVERY:
            self._compact()
        return 1

    def pending(self, module: str) -> list[Delivery]:
        return list(self.held.get(module, {}).values())

    def held_count(self, module: str | None = None) -> int:
        if module is not None:
            return len(self.held.get(module, {}))
        return sum(len(m) for m in self.held.values())

    def _add(self, delivery: Delivery) -> None:
        self.held.setdefault(delivery.to, {})[delivery.seq] = delivery
        self._by_key.setdefault(delivery.to, {}).setdefault(delivery.key, []).append(delivery.seq)
        self._window(self._delivered, (delivery.to, delivery.input)).add(delivery.key)

    def _remove(self, seq: int, module: str | None = None) -> None:
        modules = [module] if module is not None else list(self.held)
        for name in modules:
            delivery = self.held.get(name, {}).pop(seq, None)
            if delivery is None:
                continue
            seqs = self._by_key.get(name, {}).get(delivery.key, [])
            if seq in seqs:
                seqs.remove(seq)
            if not seqs:
                self._by_key.get(name, {}).pop(delivery.key, None)
            return

    @staticmethod
    def _window(windows: dict[tuple[str, str], _Window], where: tuple[str, str]) -> _Window:
        window = windows.get(where)
        if window is None:
            window = windows[where] = _Window()
        return window

    # ---- upstream ------------------------------------------------------------------------

    def upstream(self, message: Message, route: str) -> bool:
        """Append ``message`` to the upstream store (False: a duplicate, dropped)."""
        window = self._window(self._upstream, (message.module, message.output or ""))
        key = message.key
        if key in window:
            return False
        now = time.time()
        record: dict[str, Any] = {
            "time": iso_time(now),
            "epoch": now,
            "route": route,
            **message.to_record(),
        }
        try:
            record["body"] = message.body.decode()
        except UnicodeDecodeError:
            record["body_base64"] = base64.b64encode(message.body).decode()
        assert self._upstream_log is not None
        self._upstream_log.append(record)
        window.add(key)
        self.upstream_count += 1
        return True


def iso_time(epoch: float) -> str:
    """UTC, ISO 8601 with milliseconds."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch))
    return f"{stamp}.{int(epoch * 1000) % 1000:03d}Z"


def _hold_record(delivery: Delivery) -> dict[str, Any]:
    return {
        "op": "hold",
        "seq": delivery.seq,
        "to": delivery.to,
        "input": delivery.input,
        "key": delivery.key,
        "message": delivery.message.to_record(),
        "body": base64.b64encode(delivery.message.body).decode(),
    }
