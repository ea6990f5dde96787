"""Reading the reports as their consumers do, for the tests of engine.reports
and of the CLI's --format: the JUnit file against the Ant/Jenkins XSD CI tools
accept (tests/schemas/junit), markdown tables by a strict GFM table parser
checked against markdown-it-py, annotations by the workflow-command grammar."""

from __future__ import annotations

import html
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import xmlschema
from markdown_it import MarkdownIt

XSD = Path(__file__).resolve().parent / "schemas" / "junit" / "JUnit.xsd"


def line_of(text: str, name: str) -> int:
    """The 1-based line ``  NAME:`` (a resource under its section) is on, counted in the text."""
    lines = text.splitlines()
    found = [i + 1 for i, line in enumerate(lines) if re.match(rf"^  {re.escape(name)}:", line)]
    assert len(found) == 1, (name, found)
    return found[0]


def junit_root(text: str) -> ET.Element:
    """The report parsed, once it validated against the XSD (else it raises)."""
    xmlschema.XMLSchema(XSD).validate(text)
    return ET.fromstring(text)


_DELIMITER = re.compile(r"^\|(?: *:?-{3,}:? *\|)+$")


def split_row(line: str) -> list[str]:
    """A GFM table row's cells, strictly: it starts and ends with an unescaped
    ``|``; a ``|`` after a backslash is part of the cell."""
    assert line.startswith("|") and line.endswith("|") and not line.endswith("\\|"), line
    cells, cur, i = [], "", 1
    while i < len(line):
        ch = line[i]
        if ch == "\\" and i + 1 < len(line):
            cur += line[i : i + 2]
            i += 2
            continue
        if ch == "|":
            cells.append(cur.strip())
            cur = ""
        else:
            cur += ch
        i += 1
    assert cur == "", line
    return cells


def parse_tables(text: str) -> list[list[list[str]]]:
    """Every table in ``text``: header, delimiter, then rows to a blank line;
    every row must have the header's number of cells."""
    lines, tables, i = text.split("\n"), [], 0
    while i < len(lines):
        if lines[i].startswith("|"):
            header = split_row(lines[i])
            assert i + 1 < len(lines) and _DELIMITER.match(lines[i + 1]), lines[i : i + 2]
            assert len(split_row(lines[i + 1])) == len(header)
            rows = [header]
            i += 2
            while i < len(lines) and lines[i].strip():
                row = split_row(lines[i])
                assert len(row) == len(header), (row, header)
                rows.append(row)
                i += 1
            tables.append(rows)
        i += 1
    return tables


def rendered(cell: str) -> str:
    """What a reader sees in a cell: markdown-it's HTML, as text, ``<br>`` a line break."""
    md = MarkdownIt("commonmark").enable("table")
    out = md.renderInline(cell.replace("\\|", "|"))
    return html.unescape(out.replace("<br>", "\n"))


def md_tables(text: str) -> list[list[list[str]]]:
    """Every table, each row's cells; markdown-it-py (CommonMark with GFM
    tables) must see the same rows and cells."""
    tables = parse_tables(text)
    seen: list[list[str]] = []
    in_cell = False
    for t in MarkdownIt("commonmark").enable("table").parse(text):
        if t.type == "tr_open":
            seen.append([])
        in_cell = t.type in ("th_open", "td_open") or (in_cell and t.type == "inline")
        if t.type == "inline" and in_cell:
            seen[-1].append(t.content)
    mine = [row for table in tables for row in table]
    assert [[c.replace("\\|", "|") for c in r] for r in seen] == [
        [c.replace("\\|", "|") for c in r] for r in mine
    ]
    return tables


def md_check(text: str) -> list[list[str]]:
    """The one table in ``text``, checked as :func:`md_tables` does."""
    tables = md_tables(text)
    assert len(tables) == 1, text
    return tables[0]


# GitHub workflow commands

_COMMAND = re.compile(r"^::(?P<level>error|warning|notice)(?: (?P<props>[^:]*))?::(?P<msg>.*)$")


def _unescape(s: str) -> str:
    for code, ch in (("%0A", "\n"), ("%0D", "\r"), ("%3A", ":"), ("%2C", ","), ("%25", "%")):
        s = s.replace(code, ch)
    return s


def parse_annotations(text: str) -> list[dict[str, Any]]:
    """Each line a workflow command: properties ``k=v`` split on ``,`` (escaped
    in values as %2C, ``:`` as %3A), the message with %0A for line breaks."""
    out = []
    for line in text.splitlines():
        m = _COMMAND.match(line)
        assert m, line
        props = {}
        for part in (m.group("props") or "").split(","):
            if part:
                k, v = part.split("=", 1)
                props[k] = _unescape(v)
        assert "\n" not in m.group("msg") and "\r" not in m.group("msg")
        out.append({"level": m.group("level"), **props, "message": _unescape(m.group("msg"))})
    return out
