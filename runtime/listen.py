"""The listening sockets, bound by the master before it forks the workers.

With several workers on Linux, each worker gets its own socket bound to
the same address with ``SO_REUSEPORT``: the kernel spreads new
connections over the sockets by hash. With one shared socket the first
worker to wake accepts every pending connection, so a client that opens
its keep-alive connections at once (a load balancer, a benchmark) can
end up with all of them on one worker and half the throughput.

``SO_REUSEPORT`` would also let a second server of the same user bind
the same port and silently take half the traffic, so the port is first
probed with a plain bind: a port in use fails as usual. Elsewhere (or
with one worker) all workers share one socket.
"""

from __future__ import annotations

import socket
import sys

BACKLOG = 2048


def bind_listeners(host: str, port: int, count: int) -> list[socket.socket]:
    """``count`` listening sockets on ``host:port`` (the same object repeated when shared)."""
    if count > 1 and sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT"):
        probe = _socket(host)
        try:
            probe.bind((host, port))
            port = probe.getsockname()[1]
        finally:
            probe.close()
        sockets: list[socket.socket] = []
        try:
            for _ in range(count):
                sockets.append(_listen(host, port, reuse_port=True))
        except OSError:
            for sock in sockets:
                sock.close()
            raise
        return sockets
    shared = _listen(host, port, reuse_port=False)
    return [shared] * count


def _socket(host: str) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    return sock


def _listen(host: str, port: int, *, reuse_port: bool) -> socket.socket:
    sock = _socket(host)
    try:
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        sock.listen(BACKLOG)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def close_all(sockets: list[socket.socket]) -> None:
    for sock in {id(sock): sock for sock in sockets}.values():
        sock.close()
