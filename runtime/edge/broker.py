"""The MQTT side of the hub: amqtt 0.12.1's broker with the hub in front of it.

amqtt does the protocol (packets, QoS 1 flows, sessions, keep-alive); the
hub decides who may connect and what every PUBLISH means. Four things of
amqtt's are replaced (it is pinned to 0.12.1 for that reason):

- **authentication before any session is touched.** amqtt drops or takes
  over the session of a client id before it asks its auth plugins, so a
  CONNECT with a wrong key for a running module's client id would make
  that module deaf. Here the CONNECT is read and checked first
  (``EdgeHandler.connect_authenticated``); a refused one gets its CONNACK
  and is closed without the broker ever seeing it.
- **every PUBLISH goes to the hub**, not to amqtt's subscription fan-out
  (``EdgeHandler.handle_publish``): amqtt disconnects clients that publish
  to ``$…`` topics (every twin call), and the hub must journal a message
  *before* acknowledging it — amqtt's own flow acknowledges once the
  message is only in a memory queue that a disconnect clears. The PUBACK
  also waits for ``Edge.pace`` (the hub's flow control: a producer goes at
  the pace of the modules it feeds).
- **a missed keep-alive closes the connection** (amqtt only logs it), so a
  module whose host vanished is noticed after 1.5 keep-alive periods.
- **the listening socket and TLS context are the hub's** (bound before the
  broker starts, for a one-line error when the port is taken).
- **subscriptions outlive the hub process.** The SDK connects with
  ``clean_session=False`` and never subscribes again on a reconnect (IoT
  Hub and edgeHub keep the session), so a module that stayed up while the
  hub restarted would be deaf. The hub keeps each client's subscriptions
  (``Edge.keep_subscriptions``) and gives them back to a new session of that
  client id (``Edge.kept_subscriptions``).

Messages to a module go out through ``Broker.sessions[client_id][1]``
(that connection's handler): ``mqtt_publish`` sends and waits for the
PUBACK.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from functools import partial
from typing import Any, Protocol

from amqtt.adapters import ReaderAdapter, WriterAdapter
from amqtt.broker import Broker
from amqtt.errors import AMQTTError, MQTTError, NoDataError
from amqtt.mqtt.connack import NOT_AUTHORIZED, ConnackPacket
from amqtt.mqtt.constants import QOS_1, QOS_2
from amqtt.mqtt.protocol.broker_handler import BrokerProtocolHandler
from amqtt.mqtt.puback import PubackPacket
from amqtt.mqtt.publish import PublishPacket
from amqtt.plugins.manager import PluginManager
from amqtt.session import Session
from transitions import MachineError

#: Seconds a new connection has to send its CONNECT.
CONNECT_TIMEOUT_S = 10.0


class Refused(Exception):
    """A CONNECT the hub refuses: ``reason`` for the log, ``code`` for the CONNACK."""

    def __init__(self, reason: str, code: int = NOT_AUTHORIZED) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


class Edge(Protocol):
    """What the broker asks of the hub (``router.Router`` implements it)."""

    def authenticate(self, client_id: str, username: str, password: str, peer: str) -> str:
        """The module the CONNECT authenticates, or raise ``Refused``."""

    def on_publish(self, module: str, topic: str, data: bytes) -> list[str]:
        """A PUBLISH from ``module``; must be on disk when it returns (then it is acked).

        Returns the modules the message was delivered to (held for their inputs)."""

    async def pace(self, modules: list[str]) -> None:
        """Return when the PUBLISH that fed ``modules`` may be acknowledged (flow control)."""

    def on_connected(self, module: str, client_id: str) -> None: ...

    def on_subscribed(self, module: str, topics: list[str]) -> None: ...

    def on_disconnected(self, module: str) -> None: ...

    def keep_subscriptions(self, client_id: str, subscriptions: list[tuple[str, int]]) -> None:
        """The client's topic filters and QoS now (empty: forget them); kept on disk."""

    def kept_subscriptions(self, client_id: str) -> list[tuple[str, int]]:
        """What ``keep_subscriptions`` last kept for the client (across hub restarts)."""


class EdgeHandler(BrokerProtocolHandler):
    """One connection's protocol handler, knowing which module it authenticated."""

    edge: Edge | None = None
    module: str = ""

    @classmethod
    async def connect_authenticated(
        cls,
        reader: ReaderAdapter,
        writer: WriterAdapter,
        plugins: PluginManager[Any],
        edge: Edge,
    ) -> tuple[EdgeHandler, Session]:
        handler, session = await asyncio.wait_for(
            cls.init_from_connect(reader, writer, plugins), CONNECT_TIMEOUT_S
        )
        assert isinstance(handler, EdgeHandler)
        peer = f"{session.remote_address}:{session.remote_port}"
        try:
            handler.module = edge.authenticate(
                session.client_id or "", session.username or "", session.password or "", peer
            )
        except Refused as refused:
            await ConnackPacket.build(0, refused.code).to_stream(writer)
            await writer.close()
            raise MQTTError(f"CONNECT refused: {refused.reason}") from None
        handler.edge = edge
        return handler, session

    async def handle_publish(self, publish_packet: PublishPacket) -> None:
        topic = publish_packet.topic_name
        header = publish_packet.variable_header
        if publish_packet.qos == QOS_2 or topic is None or self.edge is None:
            # IoT Hub has no QoS 2 either: close, as it does.
            await self.handle_connection_closed()
            return
        try:
            fed = self.edge.on_publish(self.module, topic, bytes(publish_packet.data or b""))
        except Exception:  # logged by the hub; no PUBACK: the module sends it again
            await self.handle_connection_closed()
            return
        if fed:
            await self.edge.pace(fed)
        if publish_packet.qos == QOS_1 and header is not None and header.packet_id is not None:
            await self._send_packet(PubackPacket.build(header.packet_id))

    def handle_read_timeout(self) -> None:
        asyncio.ensure_future(self.handle_connection_closed())


class EdgeBroker(Broker):
    """amqtt's broker serving one pre-bound TLS socket, every client checked by ``edge``."""

    def __init__(self, edge: Edge, sock: socket.socket, context: ssl.SSLContext) -> None:
        host, port = sock.getsockname()[:2]
        super().__init__(
            {
                "listeners": {"default": {"type": "tcp", "bind": f"{host}:{port}"}},
                "plugins": {},
            }
        )
        self.edge = edge
        self._sock = sock
        self._context = context
        #: Subscriptions to give back to a client id's new session (see the module docstring).
        self._restore: dict[str, list[tuple[str, int]]] = {}

    async def _create_server_instance(
        self,
        listener_name: str,
        listener_type: Any,
        address: str | None,
        port: int,
        ssl_context: ssl.SSLContext | None,
    ) -> asyncio.Server:
        return await asyncio.start_server(
            partial(self.stream_connected, listener_name=listener_name),
            sock=self._sock,
            ssl=self._context,
            ssl_handshake_timeout=CONNECT_TIMEOUT_S,
        )

    async def _initialize_client_session(
        self,
        reader: ReaderAdapter,
        writer: WriterAdapter,
        remote_address: str,
        remote_port: int,
    ) -> tuple[BrokerProtocolHandler, Session]:
        try:
            handler, session = await EdgeHandler.connect_authenticated(
                reader, writer, self.plugins_manager, self.edge
            )
        except (TimeoutError, NoDataError) as error:
            await writer.close()
            raise AMQTTError(f"no CONNECT from {remote_address}:{remote_port}") from error
        except MQTTError:
            await writer.close()
            raise
        client_id = session.client_id or ""
        if session.clean_session:
            await self._delete_session(client_id)
            self.edge.keep_subscriptions(client_id, [])
            session.parent = 0
        elif client_id in self._sessions:
            # A module reconnecting (or restarted) with clean_session=False, as the SDK does:
            # keep its session (subscriptions) with the new connection's settings.
            existing, _ = self._sessions[client_id]
            existing.keep_alive = session.keep_alive
            existing.username = session.username
            existing.password = session.password
            existing.will_flag = session.will_flag
            existing.will_message = session.will_message
            existing.will_topic = session.will_topic
            existing.will_qos = session.will_qos
            session = existing
            session.parent = 1
        else:
            session.parent = 0
            kept = self.edge.kept_subscriptions(client_id)
            if kept:  # the hub restarted under a module that kept its session
                self._restore[client_id] = kept
        if session.keep_alive > 0:
            # MQTT 3.1.1: the server may close after one and a half keep-alive periods.
            session.keep_alive = session.keep_alive + (session.keep_alive + 1) // 2
        return handler, session

    async def _authenticate(self, session: Session, _: Any) -> bool:
        return True  # done before the session was looked at (_initialize_client_session)

    async def _client_message_loop(self, client_session: Session, handler: Any) -> None:
        if isinstance(handler, EdgeHandler) and client_session.client_id:
            if not client_session.transitions.is_connected():
                # A take-over: the old connection's end may have marked the shared session
                # disconnected after this one connected.
                client_session.transitions.connect()
            self.edge.on_connected(handler.module, client_session.client_id)
            for subscription in self._restore.pop(client_session.client_id, []):
                await self.add_subscription(subscription, client_session)
            subscribed = [
                topic
                for topic, subscribers in self._subscriptions.items()
                if any(s.client_id == client_session.client_id for s, _ in subscribers)
            ]
            if subscribed:
                self.edge.on_subscribed(handler.module, subscribed)
        await super()._client_message_loop(client_session, handler)

    async def _handle_subscription(
        self, client_session: Session, handler: Any, subscribe_waiter: asyncio.Future[Any]
    ) -> None:
        await super()._handle_subscription(client_session, handler, subscribe_waiter)
        if isinstance(handler, EdgeHandler):
            topics = [topic for topic, _ in subscribe_waiter.result().topics]
            self.edge.on_subscribed(handler.module, topics)
            self._keep(client_session)

    async def _handle_unsubscription(
        self, client_session: Session, handler: Any, unsubscribe_waiter: asyncio.Future[Any]
    ) -> None:
        await super()._handle_unsubscription(client_session, handler, unsubscribe_waiter)
        if isinstance(handler, EdgeHandler):
            self._keep(client_session)

    def _keep(self, session: Session) -> None:
        client_id = session.client_id or ""
        self.edge.keep_subscriptions(
            client_id,
            sorted(
                (topic, qos)
                for topic, subscribers in self._subscriptions.items()
                for s, qos in subscribers
                if s.client_id == client_id
            ),
        )

    async def _handle_disconnect(
        self, client_session: Session, handler: Any, disconnect_waiter: asyncio.Future[Any]
    ) -> None:
        current = self._sessions.get(client_session.client_id or "", (None, None))[1]
        try:
            await super()._handle_disconnect(client_session, handler, disconnect_waiter)
        except MachineError:
            pass  # the session was already marked disconnected (a take-over)
        if isinstance(handler, EdgeHandler) and handler is current:
            self.edge.on_disconnected(handler.module)

    def handler_for(self, client_id: str) -> EdgeHandler | None:
        handler = self._sessions.get(client_id, (None, None))[1]
        return handler if isinstance(handler, EdgeHandler) else None

    async def drop(self, client_id: str) -> None:
        """Close a client's connection (its module left the deployment)."""
        handler = self.handler_for(client_id)
        if handler is not None:
            await handler.handle_connection_closed()


def quiet_amqtt(level: int = logging.ERROR) -> None:
    """amqtt logs every connection and every refused CONNECT; the hub logs its own events."""
    for name in ("amqtt", "transitions"):
        logging.getLogger(name).setLevel(level)
