"""The scoring runtime as an IoT Edge module: edge messages in, ``run()``, results out.

Command line (what a module image runs; the edge agent sets the environment)::

    EdgeHubConnectionString=… EdgeModuleCACertificateFile=… \\
    python -m modelform.runtime.edge.module --entry-script score.py [--model-dir DIR] \\
        [--inputs rows,...] [--output predictions] [--error-output errors] \\
        [--timeout 60] [--report-interval 10] [--app-root DIR]

It connects with ``IoTHubModuleClient.create_from_edge_environment()``,
imports the script and calls ``init()`` once, then, for every message on
one of ``--inputs`` (default ``input1``), calls ``run()`` as the HTTP
runtime does for a request body (see ``scoring``: text, raw-request and
inference-schema scripts alike) and sends what it returns to ``--output``
(default ``output1``) as JSON, with the input's correlation id (its message
id when it has none) and its custom properties. A ``run()`` that raises (or
times out, or gets a body it cannot take, or returns more than a message
can hold) sends ``{"message", "error", "input"}`` to ``--error-output``
(default ``errors``) with the same correlation id and properties; the
module keeps going. Messages on other inputs are counted and ignored.

**The twin hook.** A script may define ``on_twin(desired: dict)``. It is
called with the module twin's *full* desired properties (``$version``
included) once after ``init()`` and before the first message, and again with
the full, updated desired properties after every change the hub pushes (the
module reads the whole twin again, so removed keys are gone) — without a
restart. It runs on the thread of ``init()`` and ``run()``, between
messages, never at the same time as them; one that raises is logged
(``on_twin_failed``) and the module keeps going. Without ``on_twin`` the
module does not read the twin.

**Reported properties.** ``{"modelform": {pid, status (running | stopped),
started, received, processed, failed, ignored, sent, send_failed,
desired_version}}``: patched once start-up is complete (after the first
``on_twin``), then every ``--report-interval`` seconds when something
changed, and at stop.

**Threads.** The SDK's handler threads only queue what arrives; the main
thread runs ``init()``, ``run()`` and ``on_twin`` one at a time, in arrival
order (the SDK's four handler threads can swap two messages that arrive
together); results go out without waiting for each acknowledgement (see
``senders``).

**Stopping.** SIGTERM/SIGINT: stop taking messages, score what is already
queued (up to ``GRACE_S``), wait for the results in flight, report,
disconnect, exit 0; a second signal exits at once. Messages the SDK
acknowledged but the module never scored are not lost with modelform's edge
hub: it holds each delivery until its result comes back and sends it again
on the next connection.

**Logs.** JSON lines on stdout (``role: edge-module``, ``module``); events
``starting``, ``script_loaded``, ``init_done``, ``init_failed``,
``connect_retry``, ``connect_failed``, ``connected``, ``connection``,
``desired_applied``, ``on_twin_failed``, ``ready`` (mode, sender),
``run_failed`` (correlation id, input, error, traceback), ``input_ignored``
(once per input name), ``send_failed``, ``report_failed``, ``stopping``,
``stopped`` (the counts). Nothing is logged per successful message.

Exit status: 0 after SIGTERM/SIGINT; 1 when it cannot connect to the edge
hub within ``CONNECT_TIMEOUT_S``; 2 for bad options or a missing or unusable
edge environment (one line on stderr); 3 when the script failed to load or
``init()`` raised.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from modelform.runtime import logs
from modelform.runtime.options import DEFAULT_TIMEOUT_S, ENV_ENTRY_SCRIPT, ENV_MODEL_DIR

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_BAD_OPTIONS = 2
EXIT_INIT_FAILED = 3

ENV_CONNECTION_STRING = "EdgeHubConnectionString"
ENV_CA_FILE = "EdgeModuleCACertificateFile"
#: The defaults of a service's ``module:`` option (providers/iotedge_config.py).
DEFAULT_INPUTS = ("input1",)
DEFAULT_OUTPUT = "output1"
DEFAULT_ERROR_OUTPUT = "errors"
DEFAULT_REPORT_INTERVAL_S = 10.0


class OptionsError(ValueError):
    """A bad option; its message is one line meant for the user."""


@dataclass(frozen=True)
class ModuleOptions:
    entry_script: Path
    model_dir: Path | None = None
    app_root: Path | None = None
    inputs: tuple[str, ...] = DEFAULT_INPUTS
    output: str = DEFAULT_OUTPUT
    error_output: str = DEFAULT_ERROR_OUTPUT
    #: Limit on one ``run()`` call in seconds; None for none.
    timeout: float | None = DEFAULT_TIMEOUT_S
    report_interval: float = DEFAULT_REPORT_INTERVAL_S

    def to_argv(self) -> list[str]:
        """The command-line arguments that give these options (for launchers)."""
        argv = ["--entry-script", str(self.entry_script)]
        if self.model_dir is not None:
            argv += ["--model-dir", str(self.model_dir)]
        if self.app_root is not None:
            argv += ["--app-root", str(self.app_root)]
        argv += ["--inputs", ",".join(self.inputs), "--output", self.output]
        argv += ["--error-output", self.error_output, "--timeout", f"{self.timeout or 0:g}"]
        return [*argv, "--report-interval", f"{self.report_interval:g}"]


def build_parser(prog: str = "python -m modelform.runtime.edge.module") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Serve a score.py as an IoT Edge module: messages on its inputs go through "
        "run(), results to its output, failures to its error output.",
    )
    parser.add_argument(
        "--entry-script",
        default=os.environ.get(ENV_ENTRY_SCRIPT),
        help=f"the score.py to run (default ${ENV_ENTRY_SCRIPT})",
    )
    parser.add_argument("--model-dir", default=None, help=f"given to the script as {ENV_MODEL_DIR}")
    parser.add_argument("--app-root", default=None, help="added to sys.path (AML_APP_ROOT)")
    parser.add_argument(
        "--inputs",
        default=",".join(DEFAULT_INPUTS),
        help="comma-separated names of the inputs to score (default %(default)s)",
    )
    parser.add_argument(
        "--output", default=DEFAULT_OUTPUT, help="results go here (default %(default)s)"
    )
    parser.add_argument(
        "--error-output",
        default=DEFAULT_ERROR_OUTPUT,
        help="failures of run() go here (default %(default)s)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT_S,
        help="limit on one run() call in seconds, 0 for none (default %(default)g)",
    )
    parser.add_argument(
        "--report-interval",
        type=float,
        default=DEFAULT_REPORT_INTERVAL_S,
        help="seconds between reported-property updates (default %(default)g)",
    )
    return parser


def options_from_namespace(args: argparse.Namespace) -> ModuleOptions:
    """Checked, absolute options; :class:`OptionsError` names the bad one."""
    if not args.entry_script:
        raise OptionsError(f"--entry-script is required (or set {ENV_ENTRY_SCRIPT})")
    script = Path(args.entry_script).expanduser().absolute()
    if not script.is_file():
        raise OptionsError(f"entry script not found: {args.entry_script}")
    model_dir = Path(args.model_dir).expanduser().absolute() if args.model_dir else None
    if model_dir is not None and not model_dir.exists():
        raise OptionsError(f"model directory not found: {args.model_dir}")
    app_root = Path(args.app_root).expanduser().absolute() if args.app_root else None
    if app_root is not None and not app_root.is_dir():
        raise OptionsError(f"app root is not a directory: {args.app_root}")
    inputs = tuple(name.strip() for name in args.inputs.split(",") if name.strip())
    if not inputs:
        raise OptionsError("--inputs needs at least one input name")
    for what, name in [
        *(("input", n) for n in inputs),
        ("output", args.output),
        ("error output", args.error_output),
    ]:
        if not name or name.startswith("$") or any(c in name for c in "/#+&=? "):
            raise OptionsError(f"bad {what} name {name!r}")
    if args.timeout < 0:
        raise OptionsError(f"--timeout must be 0 (none) or more, got {args.timeout:g}")
    if args.report_interval <= 0:
        raise OptionsError(f"--report-interval must be positive, got {args.report_interval:g}")
    return ModuleOptions(
        entry_script=script,
        model_dir=model_dir,
        app_root=app_root,
        inputs=inputs,
        output=args.output,
        error_output=args.error_output,
        timeout=args.timeout or None,
        report_interval=args.report_interval,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m modelform.runtime.edge.module``: run until SIGTERM; the exit status."""
    try:
        options = options_from_namespace(build_parser().parse_args(argv))
    except OptionsError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_OPTIONS
    missing = [n for n in (ENV_CONNECTION_STRING, ENV_CA_FILE) if not os.environ.get(n)]
    if missing:
        print(
            f"error: {' and '.join(missing)} not set (the IoT Edge agent sets them for a module)",
            file=sys.stderr,
        )
        return EXIT_BAD_OPTIONS
    fields = connection_fields(os.environ[ENV_CONNECTION_STRING])
    log = logs.JsonLog(role="edge-module", module=fields.get("ModuleId", "?"))

    from modelform.runtime.edge.modulehost import ModuleHost

    return ModuleHost(options, log).run()


def connection_fields(text: str) -> dict[str, str]:
    """A connection string's fields, without the key (for logs)."""
    pairs = (part.split("=", 1) for part in text.split(";") if "=" in part)
    return {k: v for k, v in pairs if k != "SharedAccessKey"}


if __name__ == "__main__":
    sys.exit(main())
