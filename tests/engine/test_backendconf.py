"""The ``state:`` section: which backend, its options, and errors at file:line."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelform.engine.backendconf import BackendSpec, read_spec
from modelform.engine.diagnostics import DiagnosticError
from modelform.engine.loader import load


def _file(tmp_path: Path, state: str) -> Path:
    f = tmp_path / "modelform.yaml"
    f.write_text(f"project: p\n{state}models: {{}}\n")
    return f


def _errors(f: Path) -> list[str]:
    with pytest.raises(DiagnosticError) as caught:
        read_spec(f)
    return [str(d) for d in caught.value.diagnostics]


def test_no_section_and_no_file_mean_the_local_default(tmp_path: Path) -> None:
    assert read_spec(_file(tmp_path, "")) == BackendSpec()
    assert read_spec(tmp_path / "missing.yaml") == BackendSpec()


def test_s3_options_are_taken_as_written(tmp_path: Path) -> None:
    f = _file(tmp_path, "state:\n  backend: s3\n  bucket: b\n  key: k/state.json\n")
    spec = read_spec(f)
    assert (spec.name, spec.options) == ("s3", {"bucket": "b", "key": "k/state.json"})
    assert spec.pos is not None and spec.pos.line == 2


def test_an_unknown_option_is_named_at_its_line_with_the_nearest(tmp_path: Path) -> None:
    f = _file(tmp_path, "state:\n  backend: s3\n  buckt: b\n")
    assert _errors(f) == [
        f"{f}:4:3: error: state.buckt: the s3 backend has no option 'buckt' "
        '(did you mean "bucket"?)',
        f"{f}:2:1: error: state: the s3 backend needs 'bucket'",
    ]


def test_references_and_unknown_backends_are_refused(tmp_path: Path) -> None:
    f = _file(tmp_path, "state:\n  backend: s3\n  bucket: ${var.b}\n")
    assert _errors(f) == [
        f"{f}:4:11: error: state.bucket: references are not allowed here (the state is found "
        "before variables are resolved: write the value itself)"
    ]
    f = _file(tmp_path, "state:\n  backend: lokal\n")
    assert _errors(f) == [
        f"{f}:3:12: error: state.backend: unknown state backend 'lokal' (installed: local, s3) "
        '(did you mean "local"?)'
    ]


def test_the_loader_reports_the_section_too(tmp_path: Path) -> None:
    f = _file(tmp_path, "state:\n  backend: local\n  pth: x.json\n")
    with pytest.raises(DiagnosticError, match=r"state.pth: the local backend has no option"):
        load(f)
    ok = _file(tmp_path, "state:\n  backend: local\n  path: x.json\n")
    assert load(ok).project == "p"
