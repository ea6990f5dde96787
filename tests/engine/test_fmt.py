"""``modelform fmt``: canonical layout, comments kept, data never changed."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from modelform.engine.diagnostics import DiagnosticError
from modelform.engine.fmt import check, format_file, format_text

MESSY = """\
# header comment

services:<sp>
    # the dev service
    dev:
        target: laptop
        models:
        -   ridge
        - other
        entry_script: src/score.py
        notes: |
            keep<sp>
              this

            text
        test:
            request: {data: [[0.1, 0.2],
                     [0.3]]}
    # trailing in services
project: diabetes   # name
models:
    ridge:
        path: models/ridge.pkl        # a file
        tags: {area: diabetes}


environments:
  sklearn:
    pip: [a, b]
targets:
      laptop: {kind: local}
# end comment
""".replace("<sp>", "   ")

CANONICAL = """\
# header comment

project: diabetes   # name

models:
  ridge:
    path: models/ridge.pkl        # a file
    tags: {area: diabetes}

environments:
  sklearn:
    pip: [a, b]

targets:
  laptop: {kind: local}
# end comment

services:
  # the dev service
  dev:
    target: laptop
    models:
      - ridge
      - other
    entry_script: src/score.py
    notes: |
        keep<sp>
          this

        text
    test:
      request: {data: [[0.1, 0.2],
               [0.3]]}
  # trailing in services
""".replace("<sp>", "   ")


def test_messy_file_becomes_canonical() -> None:
    assert format_text(MESSY) == CANONICAL
    assert yaml.safe_load(CANONICAL) == yaml.safe_load(MESSY)


def test_canonical_is_a_fixed_point() -> None:
    assert format_text(CANONICAL) == CANONICAL
    assert not check(CANONICAL)
    assert check(MESSY)


CASES = [
    "",
    "# only a comment\n",
    "{project: x, models: {}}\n",
    "---\nproject: x\nservices:\n    a:\n        models:\n"
    "            -   m\n            - n\n...\n",
    "services:\n  a:\n    items:\n    - name: x\n      v: 1\n    - - nested\nproject: p\n",
    "base: &b\n    x: 1\nproject: p\nother:\n    <<: *b\n    y: 2\n",
    "project: p\r\nmodels:  \r\n      m: {path: a}\r\n",
    'services:\n  a:\n    env:\n      K: "multi\n        line"\n'
    "    x: >\n       folded\n\n\nproject: q\n",
    "project: p\nservices:\n  a:\n    list:\n    - k: 1\n      j: 2\n    -   k: 3\n        j: 4\n",
    "models:\n  m:\n    path: a\n      # odd comment\n    tags: {}\n\n\n\nproject: p\n",
    "project: p\nlit: |+\n  keep trailing\n\n\n",
    "lit: |+\n  keep trailing\n\n\nproject: p\n",
    "project: p\nlit: |+\n  a\n\n\nb: 1\n",
]


@pytest.mark.parametrize("text", CASES)
def test_data_kept_and_idempotent(text: str) -> None:
    out = format_text(text)
    assert yaml.safe_load(out) == yaml.safe_load(text)
    assert format_text(out) == out
    assert out == "" or out.endswith("\n")
    assert "|+" in text or not out.endswith("\n\n")


def test_lists_under_keys_are_indented() -> None:
    text = (
        "project: p\nservices:\n  a:\n    list:\n    - k: 1\n      j: 2\n"
        "    -   k: 3\n        j: 4\n"
    )
    assert format_text(text) == (
        "project: p\n\nservices:\n  a:\n    list:\n      - k: 1\n        j: 2\n"
        "      - k: 3\n        j: 4\n"
    )


def test_alias_before_anchor_after_reordering_falls_back() -> None:
    # moving x-common after services would put the alias before its anchor
    text = "x-common: &x {port: 1}   \nservices: {a: *x}\nproject: p"
    assert format_text(text) == "x-common: &x {port: 1}\nservices: {a: *x}\nproject: p\n"


def test_nested_lists_on_one_line() -> None:
    text = "project: p   \nx:\n-   -   a\n    -   b\n-   - k: 1\n      j: 2\n\n\n"
    assert format_text(text) == ("project: p\n\nx:\n  - - a\n    - b\n  - - k: 1\n      j: 2\n")


def test_unsupported_layout_only_strips_whitespace() -> None:
    text = "project: p   \n? complex\n  key\n: 1\n\n\n"
    assert format_text(text) == "project: p\n? complex\n  key\n: 1\n"


def test_invalid_yaml_is_a_diagnostic() -> None:
    with pytest.raises(DiagnosticError, match="YAML syntax error"):
        format_text("project: [x\n", "f.yaml")
    with pytest.raises(DiagnosticError, match="duplicate key"):
        format_text("project: x\nproject: y\n")


def test_format_file(tmp_path: Path) -> None:
    f = tmp_path / "modelform.yaml"
    f.write_text(MESSY)
    assert format_file(f, write=False) is True
    assert f.read_text() == MESSY
    assert format_file(f) is True
    assert f.read_text() == CANONICAL
    assert format_file(f) is False
