"""Options, the command line, and the Azure ML stand-in modules."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from modelform.runtime import OptionsError, ServeOptions, build_parser, options_from_namespace
from modelform.runtime.aml_response import AMLResponse


def _run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "modelform.runtime", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--entry-script", "/no/such/score.py"], "entry script not found"),
        (["--workers", "0"], "workers must be at least 1"),
        (["--port", "70000"], "port must be between"),
        (["--timeout", "-1"], "timeout must be a positive"),
        (["--model-dir", "/no/such/dir"], "model directory not found"),
    ],
)
def test_bad_options_give_one_line(tmp_path: Path, args: list[str], fragment: str):
    script = tmp_path / "score.py"
    script.write_text("def init():\n    pass\n\ndef run(data):\n    return data\n")
    full = ["--entry-script", str(script), *args] if "--entry-script" not in args else args
    result = _run_cli(*full)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0]


def test_options_round_trip_through_argv_and_environ(tmp_path: Path):
    script = tmp_path / "score.py"
    script.write_text("def init():\n    pass\n\ndef run(data):\n    return data\n")
    original = ServeOptions(
        entry_script=script,
        model_dir=tmp_path,
        port=8890,
        workers=3,
        timeout=2.5,
        max_body_bytes=1234,
        access_log=False,
        auth_keys=("k1", "k2"),
    ).validate()
    argv = original.to_argv()
    assert "k1" not in " ".join(argv)
    parsed = options_from_namespace(build_parser().parse_args(argv), original.to_environ())
    assert parsed == original
    assert "k1" not in repr(parsed)


def test_scoring_timeout_ms_environment_variable(tmp_path: Path):
    script = tmp_path / "score.py"
    script.write_text("def init():\n    pass\n\ndef run(data):\n    return data\n")
    ns = build_parser().parse_args(["--entry-script", str(script)])
    assert options_from_namespace(ns, {"SCORING_TIMEOUT_MS": "1500"}).timeout == 1.5
    assert options_from_namespace(ns, {}).timeout == 60.0
    with pytest.raises(OptionsError):
        options_from_namespace(ns, {"SCORING_TIMEOUT_MS": "soon"})
    no_limit = build_parser().parse_args(["--entry-script", str(script), "--timeout", "0"])
    assert options_from_namespace(no_limit, {}).timeout is None


def test_aml_response_follows_azure_ml_semantics():
    as_json = AMLResponse({"a": [1, 2]}, 200, json_str=True)
    assert json.loads(as_json.get_data()) == {"a": [1, 2]}
    assert as_json.headers["Content-Type"] == "application/json"
    assert as_json.headers["x-ms-run-function-failed"] == "False"

    empty = AMLResponse(None, 204)
    assert empty.get_data() == b"{}"

    text = AMLResponse("hello", 200, {"X-Multi": "a, b", "Content-Type": "text/plain"})
    assert text.data == b"hello"
    assert text.headers.getlist("X-Multi") == ["a", "b"]
    assert text.headers.getlist("content-type") == ["text/plain"]
    text.headers["x-custom"] = 5
    assert text.headers["X-CUSTOM"] == "5"
    assert AMLResponse(b"x", 500, run_function_failed=True).headers["x-ms-run-function-failed"] == (
        "True"
    )


def test_stand_in_modules_register_only_when_azureml_is_absent():
    from modelform.runtime import compat

    before = set(sys.modules)
    compat.install()
    try:
        _check_stand_ins()
    finally:
        sys.meta_path.remove(compat._FINDER)
        for name in set(sys.modules) - before:
            if name.startswith("azureml"):
                del sys.modules[name]


def _check_stand_ins() -> None:
    aml_request = importlib.import_module("azureml.contrib.services.aml_request")
    aml_response = importlib.import_module("azureml.contrib.services.aml_response")
    other_name = importlib.import_module("azureml_inference_server_http.api.aml_request")
    assert aml_request is other_name is importlib.import_module("modelform.runtime.aml_request")
    assert aml_response.AMLResponse is AMLResponse
    assert sys.meta_path[-1].__class__.__name__ == "_ShimFinder"  # last: real packages win


def test_deadline_interrupts_a_long_call_after_many_short_ones():
    import time

    from modelform.runtime.deadline import Deadline, RunTimeout

    deadline = Deadline(0.2)
    try:
        for _ in range(1000):  # the timer is armed once, not per call
            assert deadline.call(sum, [1, 2]) == 3
        time.sleep(0.25)  # idle while the pending timer fires: it must not raise here
        with pytest.raises(RunTimeout):
            deadline.call(time.sleep, 30)
        assert deadline.call(str.upper, "ok") == "OK"
        with pytest.raises(RunTimeout):
            deadline.call(time.sleep, 30)
    finally:
        import signal

        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, signal.SIG_DFL)


def test_listening_sockets_give_asyncio_tcp_nodelay_connections():
    # The boot server (and any loop without uvloop) relies on asyncio setting TCP_NODELAY,
    # which it does only for sockets created with proto=IPPROTO_TCP.
    import asyncio
    import socket

    from modelform.runtime.listen import bind_listeners, close_all

    sockets = bind_listeners("127.0.0.1", 0, 2)
    port = sockets[0].getsockname()[1]
    assert all(sock.getsockname()[1] == port for sock in sockets)
    seen: list[int] = []

    async def main() -> None:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            sock = writer.get_extra_info("socket")
            seen.append(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            writer.close()

        servers = [await asyncio.start_server(handle, sock=sock.dup()) for sock in sockets]
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        for _ in range(200):
            if seen:
                break
            await asyncio.sleep(0.01)
        writer.close()
        for server in servers:
            server.close()

    try:
        asyncio.run(main())
    finally:
        close_all(sockets)
    assert seen and seen[0] != 0


def test_entry_script_and_model_dir_from_azure_ml_variables(tmp_path: Path):
    app = tmp_path / "app"
    (app / "src").mkdir(parents=True)
    (app / "src" / "score.py").write_text(
        "def init():\n    pass\n\ndef run(data):\n    return data\n"
    )
    env = {
        "AML_APP_ROOT": str(app),
        "AZUREML_ENTRY_SCRIPT": "src/score.py",
        "AZUREML_MODEL_DIR": str(tmp_path),
    }
    options = options_from_namespace(build_parser().parse_args([]), env)
    assert options.entry_script == (app / "src" / "score.py").resolve()
    assert options.model_dir == tmp_path.resolve()
    with pytest.raises(OptionsError, match="AZUREML_ENTRY_SCRIPT"):
        options_from_namespace(build_parser().parse_args([]), {})
