"""``modelform fmt``: one canonical layout for project files, comments kept.

PyYAML drops comments when it writes YAML, so the file is never re-emitted
from data. Instead the text is edited line by line, guided by the
positions PyYAML's ``compose`` gives every node:

* block mappings and lists are re-indented by 2 spaces per level, lists
  indented under their key (``key:\\n  - item``) and one space after ``-``;
  lines keep their content, so comments, quoting and flow style
  (``{kind: local}``) stay as written; a comment line moves with the line
  it sits above (or below, when it lines up with that one);
* top-level sections are put in the order project, variables, models,
  environments, targets, services (other keys after, as they were), each
  carrying the comments just above it; sections are separated by one
  blank line, except between two one-line sections;
* trailing whitespace goes, runs of blank lines become one, and the file
  ends with exactly one newline. Text inside block scalars (``|``, ``>``)
  and multi-line strings is never touched except for its indentation.

Safety: the result must load to the same data as the input; if it does
not (a layout this module does not understand, such as an anchor moved
after its alias), fmt
only strips trailing whitespace and fixes the final newline. Invalid
YAML is a :class:`DiagnosticError`, as in the loader.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from modelform.engine import yaml_positions
from modelform.engine.config import SECTIONS

ORDER = ("project", "state", "variables", "model_store", *SECTIONS, "outputs")
INDENT = 2


class _Unsupported(Exception):
    pass


def _block(node: Node) -> bool:
    return isinstance(node, MappingNode | SequenceNode) and not node.flow_style


def last_line(node: Node) -> int:
    """0-based last line a node's text occupies."""
    if _block(node):
        assert isinstance(node, MappingNode | SequenceNode)
        if not node.value:
            return node.start_mark.line
        tail = node.value[-1]
        return last_line(tail[1] if isinstance(node, MappingNode) else tail)
    end = node.end_mark
    return end.line if end.column > 0 else max(node.start_mark.line, end.line - 1)


@dataclass
class _Layout:
    lines: list[str]
    delta: dict[int, int] = field(default_factory=dict)
    #: line -> [(dash column, item column)]: rewrite each to exactly "- ".
    dash: dict[int, list[tuple[int, int]]] = field(default_factory=dict)
    protected: set[int] = field(default_factory=set)
    seen: set[int] = field(default_factory=set)

    def assign(self, first: int, last: int, delta: int) -> None:
        for i in range(first, last + 1):
            self.delta[i] = delta

    def walk(self, node: Node, canon: int) -> None:
        if id(node) in self.seen:  # an alias: its text is the "*name" on the parent's line
            return
        self.seen.add(id(node))
        if isinstance(node, ScalarNode):
            self.protect(node)
        elif not _block(node):
            self.protect(node)
        elif isinstance(node, MappingNode):
            self.walk_mapping(node, canon)
        else:
            assert isinstance(node, SequenceNode)
            self.walk_sequence(node, canon)

    def protect(self, node: Node) -> None:
        start, end = node.start_mark.line, last_line(node)
        if isinstance(node, ScalarNode) and node.style in ("|", ">"):
            header = self.lines[start][node.start_mark.column :].split("#")[0]
            if "+" not in header:  # trailing blank lines are not part of the text
                while end > start and not self.lines[end].strip():
                    end -= 1
        if end > start:
            self.protected.update(range(start + 1, end + 1))

    def walk_mapping(self, node: MappingNode, canon: int) -> None:
        first = node.value[0][0].start_mark
        self.assign(first.line, last_line(node), canon - first.column)
        for key, value in node.value:
            if not isinstance(key, ScalarNode) or key.start_mark.line != key.end_mark.line:
                raise _Unsupported("complex key")
            self.walk(value, canon + INDENT)

    def dash_col(self, item: Node) -> int:
        line = self.lines[item.start_mark.line]
        col = item.start_mark.column - 1
        while col >= 0 and line[col] == " ":
            col -= 1
        if col < 0 or line[col] != "-" or line[:col].replace("-", " ").strip():
            raise _Unsupported("list item not on its dash's line")
        return col

    def walk_sequence(self, node: SequenceNode, canon: int) -> None:
        first = self.dash_col(node.value[0])
        self.assign(node.value[0].start_mark.line, last_line(node), canon - first)
        for item in node.value:
            if id(item) in self.seen:
                continue
            dash = self.dash_col(item)
            self.walk(item, canon + INDENT)  # may be a list on the same line: "- - x"
            self.delta[item.start_mark.line] = canon - dash
            self.dash.setdefault(item.start_mark.line, []).append((dash, item.start_mark.column))

    def render(self) -> list[str]:
        out: list[str] = []
        n = len(self.lines)
        content = [
            i
            for i in range(n)
            if i in self.delta
            and i not in self.protected
            and self.lines[i].strip()
            and not _is_comment(self.lines[i])
        ]
        for i, line in enumerate(self.lines):
            if _is_comment(line) and i not in self.protected:
                delta = max(-_indent(line), self._comment_delta(i, line, content))
            else:
                delta = self.delta.get(i, 0)
            out.append(self._shift(i, line, delta))
        return out

    def _comment_delta(self, i: int, line: str, content: list[int]) -> int:
        """A comment moves with the next line when it lines up with it, else
        with the nearest line above at its own indentation."""
        col = _indent(line)
        after = next((j for j in content if j > i), None)
        if after is not None and _indent(self.lines[after]) == col:
            return self.delta[after]
        for j in reversed(content):
            if j >= i:
                continue
            if _indent(self.lines[j]) == col:
                return self.delta[j]
            if _indent(self.lines[j]) < col:
                break
        return self.delta[after] if after is not None else 0

    def _shift(self, i: int, line: str, delta: int) -> str:
        lead = line[: len(line) - len(line.lstrip(" \t"))]
        if "\t" in lead and line.strip():
            raise _Unsupported("tab in indentation")
        if not line.strip():
            return " " * max(0, len(line) + delta) if i in self.protected else ""
        if i in self.dash:
            ops = sorted(self.dash[i])
            for dash, item in ops:
                if line[dash + 1 : item].replace("-", " ").strip():
                    raise _Unsupported("text between dash and item")
            line = line[: ops[0][0]] + "- " * len(ops) + line[ops[-1][1] :]
        indent = len(lead) + delta
        if indent < 0:
            raise _Unsupported("negative indent")
        return " " * indent + line.lstrip(" ")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _is_comment(line: str) -> bool:
    return line.strip().startswith("#")


def _reorder(lines: list[str], root: MappingNode) -> list[str]:
    """Top-level entries in canonical order, each with its comments."""
    entries = [(k.value, k.start_mark.line, last_line(v)) for k, v in root.value]
    first_key = entries[0][1]
    start = first_key
    while start > 0 and _is_comment(lines[start - 1]) and not _indent(lines[start - 1]):
        start -= 1
    header = lines[:start]
    stop = len(lines)  # a document end marker "..." and what follows stay last
    for i in range(entries[-1][2] + 1, len(lines)):
        if lines[i].startswith("..."):
            stop = i
            break
    footer = lines[stop:]
    chunks: list[tuple[str, list[str]]] = []
    begin = start
    for idx, (name, _, end) in enumerate(entries):
        if idx == len(entries) - 1:
            end = stop - 1  # trailing comments stay with the last entry
        if idx + 1 < len(entries):
            nxt = entries[idx + 1][1]
            while nxt > end + 1 and _is_comment(lines[nxt - 1]) and not _indent(lines[nxt - 1]):
                nxt -= 1
            end = nxt - 1  # lines up to the next entry's own comments
        chunks.append((name, _trim(lines[begin : end + 1])))
        begin = end + 1
    rank = {name: i for i, name in enumerate(ORDER)}
    chunks.sort(key=lambda c: rank.get(c[0], len(ORDER)))
    out = _trim(header)
    if out:
        out.append("")
    for i, (_, chunk) in enumerate(chunks):
        prev = chunks[i - 1][1] if i else []
        # no blank line after a kept block scalar ("|+"): it would join its text
        if prev and (len(chunk) > 1 or len(prev) > 1) and not prev[-1].startswith(_P):
            out.append("")
        out.extend(chunk)
    return out + footer


def _trim(lines: list[str]) -> list[str]:
    lo, hi = 0, len(lines)
    while lo < hi and not lines[lo].strip():
        lo += 1
    while hi > lo and not lines[hi - 1].strip():
        hi -= 1
    return lines[lo:hi]


def _conservative(text: str) -> str:
    """Strip trailing whitespace and fix the final newline, if that keeps the data."""
    stripped = "\n".join(line.rstrip() for line in text.split("\n")).strip("\n")
    candidates = [stripped + "\n" if stripped else "", text.rstrip("\n") + "\n"]
    for candidate in candidates:
        if _same(text, candidate):
            return candidate
    return text


def _same(a: str, b: str) -> bool:
    try:
        return bool(yaml.safe_load(a) == yaml.safe_load(b))
    except yaml.YAMLError:
        return False


def format_text(text: str, file: str = "modelform.yaml") -> str:
    """The canonical layout of ``text`` (see the module docstring)."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    yaml_positions.parse(text, file)  # syntax errors and duplicate keys
    root = yaml_positions.compose(text, file)
    if root is None or not _block(root):
        return _conservative(text)
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    layout = _Layout(lines)
    try:
        layout.walk(root, 0)
        new = layout.render()
    except _Unsupported:
        return _conservative(text)
    # Lines are neither added nor removed until here, so node lines still hold.
    marked = _mark(new, layout.protected)
    if isinstance(root, MappingNode) and root.value:
        marked = _reorder(marked, root)
    marked = _tidy_marked(marked)
    while marked and not marked[-1]:
        marked.pop()
    out = "\n".join(_unmark(marked)) + "\n"
    return out if _same(text, out) else _conservative(text)


_P = "\0"


def _mark(lines: list[str], protected: set[int]) -> list[str]:
    """Tag protected lines so later steps, which move lines, still know them."""
    return [_P + line if i in protected else line for i, line in enumerate(lines)]


def _tidy_marked(lines: list[str]) -> list[str]:
    out: list[str] = []
    for line in lines:
        if not line.startswith(_P):
            line = line.rstrip()
            if not line and (not out or not out[-1]):
                continue
        out.append(line)
    return out


def _unmark(lines: list[str]) -> list[str]:
    return [line[1:] if line.startswith(_P) else line for line in lines]


def check(text: str, file: str = "modelform.yaml") -> bool:
    """True when :func:`format_text` would change ``text`` (``fmt -check``)."""
    return format_text(text, file) != text


def format_file(path: str | os.PathLike[str], *, write: bool = True) -> bool:
    """Format the file in place (unless ``write`` is False); True if it changed."""
    p = Path(path)
    text = p.read_text(encoding="utf-8")
    new = format_text(text, str(p))
    if new != text and write:
        p.write_text(new, encoding="utf-8")
    return new != text
