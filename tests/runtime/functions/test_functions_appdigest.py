"""app_digest: one digest over an app folder's sorted paths and contents."""

from __future__ import annotations

from pathlib import Path

from modelform.runtime.functions.appdigest import app_digest, app_files


def _app(root: Path) -> Path:
    (root / "model").mkdir(parents=True)
    (root / "function_app.py").write_text("import azure.functions as func\n")
    (root / "host.json").write_text('{"version": "2.0"}')
    (root / "model" / "w.bin").write_bytes(b"\x00\x01")
    return root


def test_same_content_same_digest_wherever_it_lives(tmp_path: Path) -> None:
    first = _app(tmp_path / "a")
    second = _app(tmp_path / "b")
    assert app_digest(first) == app_digest(second)
    assert app_digest(first).startswith("sha256:") and len(app_digest(first)) == 7 + 64


def test_content_names_and_boundaries_all_count(tmp_path: Path) -> None:
    root = _app(tmp_path / "a")
    base = app_digest(root)
    (root / "host.json").write_text('{"version": "2.1"}')
    changed = app_digest(root)
    assert changed != base
    (root / "host.json").rename(root / "host2.json")
    assert app_digest(root) != changed
    # Bytes moved from one file to the next are another app.
    (tmp_path / "c").mkdir()
    (tmp_path / "d").mkdir()
    (tmp_path / "c" / "a").write_bytes(b"xy")
    (tmp_path / "c" / "b").write_bytes(b"z")
    (tmp_path / "d" / "a").write_bytes(b"x")
    (tmp_path / "d" / "b").write_bytes(b"yz")
    assert app_digest(tmp_path / "c") != app_digest(tmp_path / "d")


def test_bytecode_written_by_an_import_is_not_part_of_the_app(tmp_path: Path) -> None:
    root = _app(tmp_path / "a")
    base = app_digest(root)
    (root / "__pycache__").mkdir()
    (root / "__pycache__" / "function_app.cpython-311.pyc").write_bytes(b"junk")
    assert app_digest(root) == base
    assert app_files(root) == ["function_app.py", "host.json", "model/w.bin"]
