"""A worker's start: ``init()`` on the main thread while a helper thread answers.

Azure ML calls ``init()`` and ``run()`` on the same (main) thread, and
scripts rely on it: an SQLite connection opened in ``init()``, TF1
graphs and sessions, thread-locals, ``signal`` calls. So the worker runs
import and ``init()`` on its main thread, and meanwhile
:class:`BootServer` serves the same app from a helper thread on a
duplicate of the listening socket: ``/`` is Healthy, ``/ready`` and
``/score`` answer 503, ``/metrics`` works. Once ``init()`` has
succeeded the helper stops (finishing what it is answering, closing idle
connections) and the worker's main server takes over the socket;
connections arriving in between wait in the kernel's queue.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from typing import Any


class BootServer:
    """uvicorn on a helper thread, for the time ``init()`` takes."""

    def __init__(self, config: Any, sock: socket.socket) -> None:
        import uvicorn

        self._sock = sock.dup()
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._serve, name="boot-server", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _serve(self) -> None:
        try:
            asyncio.run(self._server.serve(sockets=[self._sock]))
        except Exception:  # noqa: BLE001 - the main server will serve anyway
            pass

    def stop(self, timeout: float = 5.0) -> None:
        self._server.should_exit = True
        self._thread.join(timeout)
        try:
            self._sock.close()
        except OSError:
            pass
