"""``modelform serve`` runs the scoring runtime in the foreground."""

from __future__ import annotations

import json
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

from tests.e2e.helpers import free_port, modelform_command


def test_serve_answers_and_stops_on_sigterm(tmp_path: Path) -> None:
    (tmp_path / "score.py").write_text(
        "import json\ndef init():\n    pass\n"
        "def run(raw):\n    return {'n': len(json.loads(raw)['data'])}\n"
    )
    port = free_port()
    cmd = [*modelform_command(), "serve", "--entry-script", "score.py", "--port", str(port)]
    server = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                assert server.poll() is None, server.stdout.read() if server.stdout else ""
                assert time.monotonic() < deadline, "not ready in 30 s"
                time.sleep(0.05)
        req = urllib.request.Request(
            f"http://127.0.0.1:{port}/score", data=b'{"data": [1, 2, 3]}', method="POST"
        )
        with urllib.request.urlopen(req, timeout=5) as r:
            assert json.loads(r.read()) == {"n": 3}
    finally:
        server.send_signal(signal.SIGTERM)
        code = server.wait(timeout=30)
    assert code == 0
