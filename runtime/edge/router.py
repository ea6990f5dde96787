"""The hub itself: who may connect, where each message goes, what is held, the twins, the status.

``Router`` implements ``broker.Edge`` (what amqtt asks) and owns the
rest: the deployment read from the manifest (reloaded on SIGHUP or when
the file changes), the identities, the store of held deliveries and
upstream messages, the twins, one delivery pump per module and the status
file. Everything runs on one asyncio loop; ``on_publish`` is synchronous,
so messages are routed in the order they arrive and are journaled before
their PUBACK.

A module is *ready* while it is connected and subscribed to its inputs;
each (re)connection is a new *generation*, and everything held for the
module is sent again on it, oldest first, at most ``WINDOW`` unacknowledged
at a time.

**Flow control.** The SDK acknowledges a delivery before its handler runs,
so a producer faster than its consumer (a sensor sending as fast as the
hub acknowledges, a model scoring each message) would pile up an unbounded
backlog in the consumer's memory and every message would wait behind it.
So the PUBACK of a message delivered to a ready module waits while that
module has ``pace`` or more messages held (routed to it, no result back
yet): the producer goes at its consumer's pace (the SDK's send returns
once acknowledged) and a message waits behind at most ``pace`` others. A
module that released nothing for ``STALL_S`` is *stalled* and holds no
producer back until it releases something again (a hung ``run()`` must not
stop the sensor); a module that is not connected holds nobody back either:
what it misses is held and delivered when it is back. ``pace`` 0: no flow
control.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import urllib.parse
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from amqtt.errors import AMQTTError
from amqtt.mqtt.connack import IDENTIFIER_REJECTED
from amqtt.mqtt.constants import QOS_0, QOS_1

from modelform.runtime import logs
from modelform.runtime.edge import identities as ids
from modelform.runtime.edge import sas
from modelform.runtime.edge.broker import EdgeBroker, Refused
from modelform.runtime.edge.condition import MessageView
from modelform.runtime.edge.files import read_json, write_json
from modelform.runtime.edge.manifest import Deployment, ManifestError
from modelform.runtime.edge.manifest import load as load_manifest
from modelform.runtime.edge.messages import Message, events_prefix, input_topic, parse_properties
from modelform.runtime.edge.routes import Route
from modelform.runtime.edge.store import Delivery, Store, iso_time
from modelform.runtime.edge.twins import Twins

#: Deliveries sent to one module and not yet acknowledged (PUBACK), at most.
WINDOW = 64
#: A module that released nothing for this long no longer holds producers back.
STALL_S = 0.5
STATUS_FILE = "status.json"
#: Each client id's MQTT subscriptions, kept across hub restarts (see ``broker``).
SESSIONS_FILE = "sessions.json"
STATUS_EVERY_S = 0.5
MANIFEST_POLL_S = 1.0

_TWIN_GET = "$iothub/twin/GET/"
_TWIN_REPORTED = "$iothub/twin/PATCH/properties/reported/"
_TWIN_DESIRED = "$iothub/twin/PATCH/properties/desired/"


@dataclass
class ModuleState:
    name: str
    client_id: str = ""
    connected: bool = False
    connected_since: float | None = None
    generation: int = 0
    inputs: bool = False
    desired_patches: bool = False
    queue: deque[Delivery] = field(default_factory=deque)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    window: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(WINDOW))
    sent: int = 0
    received: int = 0
    connects: int = 0
    #: Set (and replaced) whenever a result releases something held for the module.
    progress: asyncio.Event = field(default_factory=asyncio.Event)
    #: PUBACKs waiting for the module's progress now.
    pacing: int = 0
    stalled: bool = False

    @property
    def ready(self) -> bool:
        return self.connected and self.inputs


@dataclass
class Counts:
    received: int = 0
    routed: int = 0
    delivered: int = 0
    upstream: int = 0
    duplicates: int = 0
    unrouted: int = 0
    refused: int = 0
    twin_patches: int = 0
    #: PUBACKs that waited for a consumer (flow control); stalls seen.
    paced: int = 0
    stalls: int = 0


class Router:
    def __init__(
        self,
        manifest_path: Path,
        state_dir: Path,
        deployment: Deployment,
        identities: ids.Identities,
        log: logs.JsonLog,
        *,
        host: str,
        port: int,
        pace: int,
    ) -> None:
        self.manifest_path = manifest_path
        self.state_dir = state_dir
        self.deployment = deployment
        self.identities = identities
        self.log = log
        self.host = host
        self.port = port
        self.pace_limit = pace
        self.device = identities.device
        self.store = Store(state_dir)
        self.twins = Twins(state_dir)
        self.counts = Counts()
        self.modules: dict[str, ModuleState] = {}
        self.broker: EdgeBroker | None = None
        self.started = time.time()
        self.manifest_loaded = time.time()
        self._manifest_mtime = _mtime(manifest_path)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._last_status: dict[str, Any] | None = None
        self._stopping = False
        self._sessions: dict[str, list[tuple[str, int]]] = {}

    # ---- life cycle ------------------------------------------------------------------------

    def open(self) -> None:
        """Read what the state folder keeps (held deliveries, upstream keys, twins)."""
        self.store.open()
        self.twins.open()
        with contextlib.suppress(FileNotFoundError, ValueError, TypeError):
            kept = read_json(self.state_dir / SESSIONS_FILE)
            self._sessions = {
                str(c): [(str(t), int(q)) for t, q in subs] for c, subs in kept.items()
            }
        self.twins.set_desired(self.deployment.desired)
        for module in self.deployment.modules:
            self._state(module)
        for module, held in self.store.held.items():
            self._state(module).queue.extend(held.values())

    async def run(self, broker: EdgeBroker, stop: asyncio.Event) -> None:
        self.broker = broker
        for state in self.modules.values():
            self._start_pump(state)
        await broker.start()
        self.log.info(
            "listening",
            host=self.host,
            port=self.port,
            device=self.device,
            modules=self.deployment.modules,
            routes=[r.name for r in self.deployment.routes],
            held=self.store.held_count(),
            upstream=self.store.upstream_count,
        )
        self._spawn(self._status_loop())
        self._spawn(self._watch_manifest())
        await stop.wait()
        self._stopping = True
        self.log.info("stopping", held=self.store.held_count())
        with contextlib.suppress(Exception):
            await asyncio.wait_for(broker.shutdown(), 10)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self.store.close()
        self.write_status(state="stopped")
        self.log.info("stopped", counts=self.counts.__dict__)

    def _spawn(self, coroutine: Any) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _state(self, module: str) -> ModuleState:
        state = self.modules.get(module)
        if state is None:
            state = self.modules[module] = ModuleState(module)
            if self.broker is not None:
                self._start_pump(state)
        return state

    def _start_pump(self, state: ModuleState) -> None:
        self._spawn(self._pump(state))

    # ---- broker.Edge -----------------------------------------------------------------------

    def authenticate(self, client_id: str, username: str, password: str, peer: str) -> str:
        try:
            return self._authenticate(client_id, username, password)
        except Refused as refused:
            self.counts.refused += 1
            self.log.warning(
                "connect_refused", client_id=client_id, peer=peer, reason=refused.reason
            )
            raise

    def _authenticate(self, client_id: str, username: str, password: str) -> str:
        device, sep, module = client_id.partition("/")
        if not sep or not module or "/" in module:
            raise Refused("client id is not {device}/{module}", IDENTIFIER_REJECTED)
        if device != self.device:
            raise Refused(f"unknown device {device!r}")
        if module not in self.deployment.modules or module not in self.identities.keys:
            raise Refused(f"unknown module {module!r}")
        hostname, sep, rest = username.partition("/")
        if not sep or hostname.lower() != self.identities.hostname.lower():
            raise Refused("username names another hub")
        if not (rest + "?").startswith(f"{client_id}/"):
            raise Refused("username names another client id")
        uri = sas.resource_uri(self.identities.hostname, device, module)
        reason = sas.verify(password, self.identities.keys[module], uri)
        if reason is not None:
            raise Refused(reason)
        return module

    def on_connected(self, module: str, client_id: str) -> None:
        state = self._state(module)
        state.client_id = client_id
        state.connected = True
        state.connected_since = time.time()
        state.generation += 1
        state.connects += 1
        state.inputs = state.desired_patches = False
        state.stalled = False
        state.queue = deque(self.store.pending(module))
        self.log.info(
            "module_connected", module=module, generation=state.generation, held=len(state.queue)
        )
        state.wake.set()

    def on_subscribed(self, module: str, topics: list[str]) -> None:
        state = self._state(module)
        inputs = f"devices/{self.device}/modules/{module}/inputs/"
        for topic in topics:
            if topic.startswith(inputs):
                state.inputs = True
            elif topic.startswith("$iothub/twin/PATCH/properties/desired"):
                state.desired_patches = True
        state.wake.set()

    def keep_subscriptions(self, client_id: str, subscriptions: list[tuple[str, int]]) -> None:
        if self._sessions.get(client_id, []) == subscriptions:
            return
        if subscriptions:
            self._sessions[client_id] = subscriptions
        else:
            self._sessions.pop(client_id, None)
        write_json(self.state_dir / SESSIONS_FILE, self._sessions)

    def kept_subscriptions(self, client_id: str) -> list[tuple[str, int]]:
        return list(self._sessions.get(client_id, []))

    def on_disconnected(self, module: str) -> None:
        state = self._state(module)
        state.connected = False
        state.inputs = state.desired_patches = False
        self.log.info("module_disconnected", module=module, held=self.store.held_count(module))

    def on_publish(self, module: str, topic: str, data: bytes) -> list[str]:
        try:
            return self._on_publish(module, topic, data)
        except Exception as error:
            self.log.error("publish_failed", module=module, topic=topic[:200], error=repr(error))
            raise

    def _on_publish(self, module: str, topic: str, data: bytes) -> list[str]:
        prefix = events_prefix(self.device, module)
        if topic.startswith(prefix):
            message = Message(body=data, module=module)
            parse_properties(topic[len(prefix) :], message)
            return self._route(message)
        if topic.startswith("$iothub/twin/"):
            self._twin_request(module, topic, data)
        elif topic.startswith("$iothub/methods/res/"):
            pass  # direct methods are not invoked by the local hub
        else:
            self.log.warning("publish_ignored", module=module, topic=topic[:200])
        return []

    async def pace(self, modules: list[str]) -> None:
        """Flow control (see the module docstring): wait while a fed module is behind."""
        limit = self.pace_limit
        if not limit:
            return
        for module in modules:
            state = self.modules.get(module)
            if state is None:
                continue
            waited = False
            while (
                state.ready
                and not state.stalled
                and not self._stopping
                and self.store.held_count(module) >= limit
            ):
                waited = True
                progress = state.progress
                state.pacing += 1
                try:
                    await asyncio.wait_for(progress.wait(), STALL_S)
                except TimeoutError:
                    state.stalled = True
                    self.counts.stalls += 1
                    self.log.warning(
                        "module_stalled",
                        module=module,
                        held=self.store.held_count(module),
                        seconds=STALL_S,
                    )
                finally:
                    state.pacing -= 1
            if waited:
                self.counts.paced += 1

    def _progressed(self, module: str) -> None:
        """Something held for ``module`` was released: wake the PUBACKs waiting for it."""
        state = self.modules.get(module)
        if state is None:
            return
        state.stalled = False
        if state.pacing:
            state.progress.set()
            state.progress = asyncio.Event()

    # ---- routing ---------------------------------------------------------------------------

    def _route(self, message: Message) -> list[str]:
        """Route ``message``; the modules it was delivered to."""
        counts = self.counts
        counts.received += 1
        self._state(message.module).received += 1
        message.ensure_id()
        key = message.correlation_id or message.message_id or ""
        if self.store.release_key(message.module, key):
            self._progressed(message.module)
        view: MessageView | None = None
        routed = False
        fed: list[str] = []
        for route in self.deployment.routes:
            if route.condition is not None and view is None:
                view = MessageView(message.properties, message.system(), message.body)
            if not route.matches(message.module, message.output, view):
                continue
            routed = True
            if route.sink_module is None:
                if self.store.upstream(message, route.name):
                    counts.upstream += 1
                else:
                    counts.duplicates += 1
            elif self._deliver_to(route, message):
                fed.append(route.sink_module)
        if routed:
            counts.routed += 1
        else:
            counts.unrouted += 1
        return fed

    def _deliver_to(self, route: Route, message: Message) -> bool:
        """Hold ``message`` for the route's module input (False: a duplicate, dropped)."""
        assert route.sink_module is not None and route.sink_input is not None
        delivery = self.store.hold(route.sink_module, route.sink_input, message)
        if delivery is None:
            self.counts.duplicates += 1
            return False
        state = self._state(route.sink_module)
        state.queue.append(delivery)
        if state.ready:
            state.wake.set()
        return True

    def _reads_results(self, module: str) -> bool:
        """Does any route take ``module``'s outputs? (Else nothing comes back to wait for.)"""
        return any(r.module is None or r.module == module for r in self.deployment.routes)

    async def _pump(self, state: ModuleState) -> None:
        while True:
            await state.wake.wait()
            state.wake.clear()
            while state.ready and state.queue:
                delivery = state.queue.popleft()
                generation = state.generation
                if delivery.sent_on == generation or delivery.seq not in self.store.held.get(
                    state.name, {}
                ):
                    continue
                await state.window.acquire()
                if not state.ready or state.generation != generation:
                    state.window.release()
                    break  # the connection changed while waiting: the queue was rebuilt
                delivery.sent_on = generation
                self._spawn(self._send(state, delivery, generation))

    async def _send(self, state: ModuleState, delivery: Delivery, generation: int) -> None:
        try:
            handler = self.broker.handler_for(state.client_id) if self.broker else None
            if handler is None:
                raise ConnectionError("not connected")
            topic = input_topic(self.device, state.name, delivery.input, delivery.message)
            # amqtt waits 5 s for the PUBACK, then raises TimeoutError.
            await handler.mqtt_publish(topic, delivery.message.body, QOS_1, retain=False)
            state.sent += 1
            self.counts.delivered += 1
            if not self._reads_results(state.name) and self.store.release(state.name, delivery.seq):
                self._progressed(state.name)
        except (TimeoutError, ConnectionError, AMQTTError, OSError, asyncio.CancelledError) as e:
            if isinstance(e, asyncio.CancelledError) and self._stopping:
                raise
            if state.generation == generation and state.ready:
                delivery.sent_on = 0  # no PUBACK on a live connection: send it again
                state.queue.append(delivery)
                state.wake.set()
        finally:
            state.window.release()

    # ---- twins -----------------------------------------------------------------------------

    def _twin_request(self, module: str, topic: str, data: bytes) -> None:
        path, _, query = topic.partition("?")
        params = dict(urllib.parse.parse_qsl(query))
        rid = params.get("$rid", "")
        if path == _TWIN_GET:
            body = orjson.dumps(self.twins.document(module))
            self._spawn(self._publish(module, f"$iothub/twin/res/200/?$rid={rid}", body))
        elif path == _TWIN_REPORTED:
            try:
                patch = orjson.loads(data)
                if not isinstance(patch, dict):
                    raise ValueError("not an object")
            except ValueError:
                self._spawn(self._publish(module, f"$iothub/twin/res/400/?$rid={rid}", b""))
                return
            version = self.twins.patch_reported(module, patch)
            self._spawn(
                self._publish(module, f"$iothub/twin/res/204/?$rid={rid}&$version={version}", b"")
            )
        else:
            self._spawn(self._publish(module, f"$iothub/twin/res/404/?$rid={rid}", b""))

    async def _publish(self, module: str, topic: str, body: bytes, qos: int = QOS_0) -> bool:
        state = self._state(module)
        handler = self.broker.handler_for(state.client_id) if self.broker else None
        if handler is None or not state.connected:
            return False
        try:
            await handler.mqtt_publish(topic, body, qos, retain=False)
        except (TimeoutError, AMQTTError, OSError):
            return False
        return True

    # ---- manifest reload -------------------------------------------------------------------

    def reload(self) -> None:
        """Read the manifest again: routes, modules, desired properties (pushed to modules)."""
        self._manifest_mtime = _mtime(self.manifest_path)
        try:
            deployment = load_manifest(self.manifest_path)
        except ManifestError as error:
            self.log.error("reload_failed", error=str(error), kept=self.deployment.digest)
            return
        if deployment.digest == self.deployment.digest:
            return
        removed = set(self.deployment.modules) - set(deployment.modules)
        self.identities = ids.ensure(
            self.state_dir,
            deployment.modules,
            device=self.identities.device,
            gateway=self.identities.gateway,
            hostname=self.identities.hostname,
        )
        self.deployment = deployment
        self.manifest_loaded = time.time()
        patches = self.twins.set_desired(deployment.desired)
        for module in deployment.modules:
            self._state(module)
        for module, patch in patches.items():
            self.counts.twin_patches += 1
            self._spawn(self._push_desired(module, patch))
        for module in removed:
            state = self.modules.get(module)
            if state is not None and state.connected and self.broker is not None:
                self._spawn(self.broker.drop(state.client_id))
        self.log.info(
            "reloaded",
            digest=deployment.digest,
            modules=deployment.modules,
            routes=[r.name for r in deployment.routes],
            desired_patches=sorted(patches),
            removed=sorted(removed),
        )

    async def _push_desired(self, module: str, patch: dict[str, Any]) -> None:
        state = self._state(module)
        if not (state.connected and state.desired_patches):
            return  # the SDK reads the whole twin when it connects and subscribes
        topic = f"{_TWIN_DESIRED}?$version={patch['$version']}"
        sent = await self._publish(module, topic, orjson.dumps(patch), QOS_1)
        self.log.info("desired_pushed", module=module, version=patch["$version"], sent=sent)

    async def _watch_manifest(self) -> None:
        while True:
            await asyncio.sleep(MANIFEST_POLL_S)
            if _mtime(self.manifest_path) != self._manifest_mtime:
                self.reload()

    # ---- status ----------------------------------------------------------------------------

    def status(self, state: str = "running") -> dict[str, Any]:
        return {
            "state": state,
            "pid": os.getpid(),
            "host": self.host,
            "port": self.port,
            "device": self.device,
            "hostname": self.identities.hostname,
            "started": iso_time(self.started),
            "manifest": {
                "path": str(self.manifest_path),
                "digest": self.deployment.digest,
                "loaded": iso_time(self.manifest_loaded),
            },
            "modules": {
                name: {
                    "connected": m.connected,
                    "connected_since": iso_time(m.connected_since) if m.connected_since else None,
                    "ready": m.ready,
                    "connects": m.connects,
                    "received": m.received,
                    "delivered": m.sent,
                    "held": self.store.held_count(name),
                    "in_manifest": name in self.deployment.modules,
                }
                for name, m in sorted(self.modules.items())
            },
            "counts": dict(self.counts.__dict__),
            "held": self.store.held_count(),
            "upstream": self.store.upstream_count,
        }

    def write_status(self, state: str = "running") -> None:
        status = self.status(state)
        if status != self._last_status:
            self._last_status = status
            write_json(self.state_dir / STATUS_FILE, status)

    async def _status_loop(self) -> None:
        while True:
            self.write_status()
            await asyncio.sleep(STATUS_EVERY_S)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0
