"""The scoring server's options: one dataclass, one argument parser.

``modelform serve`` mirrors these options; providers build a
:class:`ServeOptions` and either call :func:`modelform.runtime.serve` or
start ``python -m modelform.runtime`` with :meth:`ServeOptions.to_argv`
and :meth:`ServeOptions.to_environ`.

The auth key never travels on a command line (it would show in ``ps``):
it is read from ``MODELFORM_AUTH_KEY`` (and ``MODELFORM_AUTH_KEY_SECONDARY``
for rotation), then removed from the environment the user's script sees.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

ENV_AUTH_KEY = "MODELFORM_AUTH_KEY"
ENV_ENTRY_SCRIPT = "AZUREML_ENTRY_SCRIPT"
ENV_MODEL_DIR = "AZUREML_MODEL_DIR"
ENV_APP_ROOT = "AML_APP_ROOT"
ENV_AUTH_KEY_SECONDARY = "MODELFORM_AUTH_KEY_SECONDARY"
#: Azure ML's name for the scoring timeout, in milliseconds; used when --timeout is absent.
ENV_SCORING_TIMEOUT_MS = "SCORING_TIMEOUT_MS"

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 5001  # the Azure ML inference server's default port
DEFAULT_TIMEOUT_S = 60.0
DEFAULT_MAX_BODY_BYTES = 100 * 1024 * 1024


class OptionsError(ValueError):
    """A bad option; its message is one line meant for the user."""


@dataclass(frozen=True)
class ServeOptions:
    """Everything the scoring server needs to start.

    ``timeout`` is the per-request limit on ``run()`` in seconds (None: no
    limit). ``auth_keys`` empty means no authentication; otherwise
    ``POST /score`` needs ``Authorization: Bearer <one of the keys>``.
    """

    entry_script: Path
    model_dir: Path | None = None
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    workers: int = 1
    timeout: float | None = DEFAULT_TIMEOUT_S
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    access_log: bool = True
    graceful_timeout: float = 10.0
    app_root: Path | None = None
    auth_keys: tuple[str, ...] = field(default=(), repr=False)

    def validate(self) -> ServeOptions:
        """Return the options with absolute paths, or raise :class:`OptionsError`."""
        script = Path(self.entry_script).expanduser()
        if not script.is_file():
            raise OptionsError(f"entry script not found: {self.entry_script}")
        model_dir = Path(self.model_dir).expanduser() if self.model_dir is not None else None
        if model_dir is not None and not model_dir.exists():
            raise OptionsError(f"model directory not found: {self.model_dir}")
        app_root = Path(self.app_root).expanduser() if self.app_root is not None else None
        if app_root is not None and not app_root.is_dir():
            raise OptionsError(f"app root is not a directory: {self.app_root}")
        if not 0 <= self.port <= 65535:
            raise OptionsError(f"port must be between 0 and 65535, got {self.port}")
        if self.workers < 1:
            raise OptionsError(f"workers must be at least 1, got {self.workers}")
        if self.timeout is not None and not self.timeout > 0:
            raise OptionsError(f"timeout must be a positive number of seconds, got {self.timeout}")
        if self.max_body_bytes < 1:
            raise OptionsError(f"max body bytes must be positive, got {self.max_body_bytes}")
        if self.graceful_timeout < 0:
            raise OptionsError(
                f"graceful timeout must not be negative, got {self.graceful_timeout}"
            )
        if any(not key for key in self.auth_keys):
            raise OptionsError(f"{ENV_AUTH_KEY} is set but empty")
        return replace(
            self,
            entry_script=script.resolve(),
            model_dir=model_dir.resolve() if model_dir is not None else None,
            app_root=app_root.resolve() if app_root is not None else None,
        )

    def to_argv(self) -> list[str]:
        """Arguments for ``python -m modelform.runtime`` that rebuild these options."""
        argv = ["--entry-script", str(self.entry_script)]
        if self.model_dir is not None:
            argv += ["--model-dir", str(self.model_dir)]
        argv += ["--host", self.host, "--port", str(self.port), "--workers", str(self.workers)]
        argv += ["--timeout", "0" if self.timeout is None else repr(float(self.timeout))]
        argv += ["--max-body-bytes", str(self.max_body_bytes)]
        argv += ["--graceful-timeout", repr(float(self.graceful_timeout))]
        if self.app_root is not None:
            argv += ["--app-root", str(self.app_root)]
        if not self.access_log:
            argv.append("--no-access-log")
        return argv

    def to_environ(self) -> dict[str, str]:
        """Environment entries that carry the secrets (the auth keys)."""
        env: dict[str, str] = {}
        if self.auth_keys:
            env[ENV_AUTH_KEY] = self.auth_keys[0]
        if len(self.auth_keys) > 1:
            env[ENV_AUTH_KEY_SECONDARY] = self.auth_keys[1]
        return env


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the server's options to ``parser`` (``modelform serve`` reuses this)."""
    parser.add_argument(
        "--entry-script",
        type=Path,
        help="the score.py to serve (default: $AZUREML_ENTRY_SCRIPT, relative to the app root)",
    )
    parser.add_argument(
        "--model-dir",
        type=Path,
        help="model folder, given to the script as AZUREML_MODEL_DIR (default: that variable)",
    )
    parser.add_argument("--host", default=DEFAULT_HOST, help=f"address to bind ({DEFAULT_HOST})")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="port; 0 picks a free one")
    parser.add_argument("--workers", type=int, default=1, help="worker processes sharing the port")
    parser.add_argument(
        "--timeout",
        type=float,
        default=None,
        help=f"seconds run() may take before 504; 0 for none (default {DEFAULT_TIMEOUT_S:g}, "
        f"or {ENV_SCORING_TIMEOUT_MS})",
    )
    parser.add_argument(
        "--max-body-bytes",
        type=int,
        default=DEFAULT_MAX_BODY_BYTES,
        help="larger request bodies get 413 (default 100 MiB)",
    )
    parser.add_argument(
        "--graceful-timeout", type=float, default=10.0, help="seconds to finish requests on stop"
    )
    parser.add_argument("--app-root", type=Path, help="AML_APP_ROOT: imports, swagger files")
    parser.add_argument(
        "--no-access-log", dest="access_log", action="store_false", help="no line per request"
    )


def build_parser(prog: str = "python -m modelform.runtime") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Serve an Azure-ML-style score.py (init()/run()) over HTTP. "
        f"The auth key, if any, comes from ${ENV_AUTH_KEY}.",
    )
    add_arguments(parser)
    return parser


def options_from_namespace(
    ns: argparse.Namespace, environ: Mapping[str, str] | None = None
) -> ServeOptions:
    """Turn parsed arguments plus the environment into validated options."""
    env = os.environ if environ is None else environ
    if ns.timeout is None:
        timeout: float | None = _timeout_from_env(env)
    else:
        timeout = None if ns.timeout == 0 else ns.timeout
    keys = tuple(env[name] for name in (ENV_AUTH_KEY, ENV_AUTH_KEY_SECONDARY) if name in env)
    entry_script = ns.entry_script
    if entry_script is None:
        # Azure ML's way: AZUREML_ENTRY_SCRIPT, relative to the app root.
        from_env = env.get(ENV_ENTRY_SCRIPT, "").strip()
        if not from_env:
            raise OptionsError(f"no entry script: use --entry-script or set {ENV_ENTRY_SCRIPT}")
        app_root = ns.app_root or Path(env.get(ENV_APP_ROOT) or os.getcwd())
        entry_script = Path(app_root) / from_env
    model_dir = ns.model_dir
    if model_dir is None and env.get(ENV_MODEL_DIR, "").strip():
        model_dir = Path(env[ENV_MODEL_DIR])
    return ServeOptions(
        entry_script=entry_script,
        model_dir=model_dir,
        host=ns.host,
        port=ns.port,
        workers=ns.workers,
        timeout=timeout,
        max_body_bytes=ns.max_body_bytes,
        access_log=ns.access_log,
        graceful_timeout=ns.graceful_timeout,
        app_root=ns.app_root,
        auth_keys=keys,
    ).validate()


def parse_args(argv: Sequence[str] | None = None) -> ServeOptions:
    """Parse a command line (argparse exits 2 on malformed arguments)."""
    return options_from_namespace(build_parser().parse_args(argv))


def take_secrets(environ: MutableMapping[str, str]) -> None:
    """Remove the auth keys from ``environ`` so the user's code never sees them."""
    environ.pop(ENV_AUTH_KEY, None)
    environ.pop(ENV_AUTH_KEY_SECONDARY, None)


def _timeout_from_env(env: Mapping[str, str]) -> float | None:
    raw = env.get(ENV_SCORING_TIMEOUT_MS)
    if raw is None or not raw.strip():
        return DEFAULT_TIMEOUT_S
    try:
        millis = float(raw)
    except ValueError:
        raise OptionsError(f"{ENV_SCORING_TIMEOUT_MS} must be a number, got {raw!r}") from None
    return None if millis <= 0 else millis / 1000.0
