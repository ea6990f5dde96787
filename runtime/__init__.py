"""modelform's scoring runtime: serves an Azure-ML-style ``score.py`` over HTTP.

One runtime serves every target (local process, container, Kubernetes,
function app, IoT Edge module). It imports nothing of the engine,
providers or state, and needs only uvicorn, httptools, uvloop (optional)
and orjson.

Library entry point::

    from modelform.runtime import ServeOptions, serve

    exit_code = serve(ServeOptions(entry_script=Path("score.py"), model_dir=Path("model"),
                                   port=8890, workers=2))

Command line (what providers start in a process, image or module)::

    MODELFORM_AUTH_KEY=... python -m modelform.runtime --entry-script score.py \\
        --model-dir model --host 127.0.0.1 --port 8890 --workers 2 [--timeout 60] \\
        [--max-body-bytes 104857600]

Exit status: 0 after SIGTERM/SIGINT, 1 on an error (port in use, a worker
crashed while starting), 2 on bad options, 3 when the script failed to
load or ``init()`` raised. See docs/runtime.md for routes and behaviour.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from modelform.runtime.options import (
    DEFAULT_HOST,
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_PORT,
    DEFAULT_TIMEOUT_S,
    ENV_AUTH_KEY,
    ENV_AUTH_KEY_SECONDARY,
    OptionsError,
    ServeOptions,
    add_arguments,
    build_parser,
    options_from_namespace,
    parse_args,
)

EXIT_BAD_OPTIONS = 2


def serve(options: ServeOptions) -> int:
    """Run the server in the foreground until SIGTERM/SIGINT; return the exit status.

    Forks the worker processes: call it from a process's main thread, with
    no other threads running. Raises :class:`OptionsError` for bad options.
    """
    from modelform.runtime.master import serve as _serve

    return _serve(options)


def main(argv: Sequence[str] | None = None, prog: str = "python -m modelform.runtime") -> int:
    """``python -m modelform.runtime``: parse arguments, serve, return the exit status.

    ``prog`` names the command in usage and help (``modelform serve`` passes its own).
    """
    try:
        options = options_from_namespace(build_parser(prog).parse_args(argv))
    except OptionsError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_OPTIONS
    return serve(options)


__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_PORT",
    "DEFAULT_TIMEOUT_S",
    "ENV_AUTH_KEY",
    "ENV_AUTH_KEY_SECONDARY",
    "EXIT_BAD_OPTIONS",
    "OptionsError",
    "ServeOptions",
    "add_arguments",
    "build_parser",
    "main",
    "options_from_namespace",
    "parse_args",
    "serve",
]
