"""The local Azure Functions host: runs a Python v2 function app on real storage.

It loads ``function_app.py`` from an app folder through the
``azure-functions`` library's own metadata (``FunctionApp.get_functions()``,
``get_function_json()``), so a generated app and a hand-written one run
alike, and drives its triggers: HTTP on a port, blob (over the Azure Blob
API or S3), storage queue and service bus. See ``host`` for the pieces.

Command line (what the functionapp provider starts)::

    MODELFORM_FUNCTION_KEY=... python -m modelform.runtime.functions APP_DIR \\
        --host 127.0.0.1 --port 7071 [--host-id ID] [--poll-seconds 0.5] \\
        [--lease-seconds 30]

``app_digest(path)`` (module ``appdigest``) names an app folder's content;
the packager, the provider and the host's ``/admin/host/status`` share it.
The package imports only the standard library at import time; the host
itself needs ``azure-functions`` and, for the triggers it serves,
``boto3`` / ``azure-storage-blob`` / ``azure-storage-queue`` /
``azure-servicebus``.
"""

from __future__ import annotations

from collections.abc import Sequence

from modelform.runtime.functions.appdigest import app_digest


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m modelform.runtime.functions``: run the host; return the exit status."""
    from modelform.runtime.functions.cli import main as _main

    return _main(argv)


__all__ = ["app_digest", "main"]
