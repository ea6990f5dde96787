"""Calling the user's function, counting and logging each call.

Sync functions run on the calling thread (a trigger's worker) or, for
HTTP, on a thread pool of ``PYTHON_THREADPOOL_THREAD_COUNT`` threads (the
worker's setting; Python's default size when unset). ``async def``
functions run on the host's event loop, as the worker runs them on its
own loop, whichever trigger calls them.

Counts per function: ``invocations`` (every call of the function, retries
included), ``failures`` (calls that raised, or whose outputs could not be
written) and ``poisoned`` (blobs and messages given up on).
"""

from __future__ import annotations

import asyncio
import os
import threading
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from time import perf_counter
from typing import Any

from modelform.runtime import logs
from modelform.runtime.functions.bindings import Context, Out
from modelform.runtime.functions.loader import FunctionSpec


@dataclass
class Outcome:
    """One call: what it returned and set, or how it failed."""

    ok: bool
    seconds: float
    returned: Any = None
    outputs: dict[str, Out] = field(default_factory=dict)
    error: str | None = None
    traceback: str | None = None
    invocation_id: str = ""


class Counts:
    """Invocations, failures and poisoned per function; read by /admin/host/status."""

    def __init__(self, names: list[str]) -> None:
        self._lock = threading.Lock()
        self._counts = {name: {"invocations": 0, "failures": 0, "poisoned": 0} for name in names}

    def add(self, name: str, key: str, amount: int = 1) -> None:
        with self._lock:
            self._counts[name][key] += amount

    def snapshot(self) -> dict[str, dict[str, int]]:
        with self._lock:
            return {name: dict(values) for name, values in self._counts.items()}


def _pool_size() -> int:
    raw = os.environ.get("PYTHON_THREADPOOL_THREAD_COUNT", "").strip()
    if raw.isdigit() and int(raw) > 0:
        return int(raw)
    return min(32, (os.cpu_count() or 1) + 4)


class Invoker:
    def __init__(self, log: logs.JsonLog, counts: Counts, app_dir: str) -> None:
        self.log = log
        self.counts = counts
        self._app_dir = app_dir
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pool: ThreadPoolExecutor | None = None

    def attach_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def _arguments(
        self, spec: FunctionSpec, inputs: dict[str, Any], retry_count: int, max_retries: int
    ) -> tuple[dict[str, Any], dict[str, Out], Context | None]:
        outs = {param.name: Out() for param in spec.outputs()}
        kwargs = {**inputs, **outs}
        context = None
        if spec.requires_context:
            context = Context(
                spec.name, self._app_dir, retry_count=retry_count, max_retries=max_retries
            )
            kwargs["context"] = context
        return kwargs, outs, context

    def call(
        self,
        spec: FunctionSpec,
        inputs: dict[str, Any],
        *,
        retry_count: int = 0,
        max_retries: int = 0,
    ) -> Outcome:
        """Call ``spec``'s function from a trigger's thread (never the event loop's)."""
        kwargs, outs, context = self._arguments(spec, inputs, retry_count, max_retries)
        start = perf_counter()
        try:
            if spec.is_async:
                if self._loop is None:
                    raise RuntimeError("the host's event loop is not running")
                returned = asyncio.run_coroutine_threadsafe(
                    spec.func(**kwargs), self._loop
                ).result()
            else:
                returned = spec.func(**kwargs)
        except (Exception, SystemExit) as error:
            return _failed(error, perf_counter() - start, outs, context)
        return Outcome(True, perf_counter() - start, returned, outs, None, None, _id(context))

    async def call_async(self, spec: FunctionSpec, inputs: dict[str, Any]) -> Outcome:
        """Call ``spec``'s function from the event loop (HTTP)."""
        kwargs, outs, context = self._arguments(spec, inputs, 0, 0)
        start = perf_counter()
        try:
            if spec.is_async:
                returned = await spec.func(**kwargs)
            else:
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(_pool_size(), thread_name_prefix="http-fn")
                loop = asyncio.get_running_loop()
                returned = await loop.run_in_executor(self._pool, lambda: spec.func(**kwargs))
        except (Exception, SystemExit) as error:
            return _failed(error, perf_counter() - start, outs, context)
        return Outcome(True, perf_counter() - start, returned, outs, None, None, _id(context))

    def record(self, spec: FunctionSpec, outcome: Outcome, **fields: Any) -> None:
        """Count one call and log it (one line: ok or failed, with its duration)."""
        self.counts.add(spec.name, "invocations")
        ms = round(outcome.seconds * 1000, 3)
        if outcome.ok:
            self.log.info("invocation", function=spec.name, result="ok", ms=ms, **fields)
            return
        self.counts.add(spec.name, "failures")
        extra = {"traceback": outcome.traceback} if outcome.traceback else {}
        self.log.error(
            "invocation",
            function=spec.name,
            result="failed",
            ms=ms,
            error=outcome.error,
            **fields,
            **extra,
        )

    def poisoned(self, spec: FunctionSpec, **fields: Any) -> None:
        self.counts.add(spec.name, "poisoned")
        self.log.error("poisoned", function=spec.name, **fields)

    def shutdown(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)


def _id(context: Context | None) -> str:
    return context.invocation_id if context is not None else ""


def _failed(
    error: BaseException, seconds: float, outs: dict[str, Out], context: Context | None
) -> Outcome:
    message = f"{type(error).__name__}: {error}".strip()
    return Outcome(
        False,
        seconds,
        None,
        outs,
        message.splitlines()[0] if message else type(error).__name__,
        traceback.format_exc(),
        _id(context),
    )
