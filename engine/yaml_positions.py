"""YAML to plain data, remembering where every node came from.

PyYAML's ``compose`` keeps a start mark on each node; this module turns
the node tree into plain dicts, lists and scalars and records, for every
path such as ``("services", "api", "port")``, the 1-based line and column
of the key and of the value. It also refuses what ``yaml.safe_load``
silently accepts: a key given twice in one mapping (PyYAML keeps the
last). Syntax errors become :class:`DiagnosticError` at PyYAML's mark.

Mapping keys are always strings: a key is the text the user wrote (so
``8080:`` is ``"8080"``, not an int). Scalars other than str, int, float,
bool and null (timestamps, binary) are kept as the text written, so the
data is always plain JSON. Merge keys (``<<: *base``) and aliases work;
recursive aliases are an error, and so are aliases that would make more than
``yaml_aliases.ALIAS_BUDGET`` values in all (a "billion laughs" file), reported
at the alias that goes past it.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from modelform.engine.diagnostics import DiagnosticError, Pos
from modelform.engine.yaml_aliases import AliasBudget, AliasesUnplaced, compose_marked

Path_ = tuple[str | int, ...]

_MERGE_TAG = "tag:yaml.org,2002:merge"
_PLAIN_TYPES = (str, int, float, bool, type(None))


@dataclass
class ScalarInfo:
    """How a string scalar was written, to point inside it."""

    style: str | None
    line: int
    col: int
    single_line: bool
    raw: str


@dataclass
class Source:
    """A parsed YAML document: its data and the position of every node."""

    file: str
    data: Any
    #: Position of each value, keyed by path; for a mapping entry whose value
    #: starts on a later line (a block mapping or list) it is the key's position.
    positions: dict[Path_, Pos] = field(default_factory=dict)
    #: Position of the key of each mapping entry.
    key_positions: dict[Path_, Pos] = field(default_factory=dict)
    #: Position where each value itself starts.
    value_positions: dict[Path_, Pos] = field(default_factory=dict)
    scalars: dict[Path_, ScalarInfo] = field(default_factory=dict)

    def pos(self, path: Path_) -> Pos:
        """Position of ``path`` or of its nearest ancestor that has one."""
        p = tuple(path)
        while p:
            if p in self.positions:
                return self.positions[p]
            p = p[:-1]
        return self.positions.get((), Pos(self.file, 1, 1))

    def key_pos(self, path: Path_) -> Pos:
        return self.key_positions.get(tuple(path)) or self.pos(path)

    def value_pos(self, path: Path_) -> Pos:
        return self.value_positions.get(tuple(path)) or self.pos(path)

    def string_pos(self, path: Path_, offset: int) -> Pos:
        """Position of character ``offset`` of the string at ``path``, where
        it can be known exactly (single-line scalars without escapes)."""
        info = self.scalars.get(tuple(path))
        if info is None:
            return self.value_pos(path)
        if info.single_line and info.style is None:
            return Pos(self.file, info.line, info.col + offset)
        if info.single_line and info.style in ("'", '"'):
            body = info.raw[1:]
            escapes = "\\" if info.style == '"' else "''"
            if escapes not in body[: offset + 1]:
                return Pos(self.file, info.line, info.col + 1 + offset)
        return Pos(self.file, info.line, info.col)


def mark_pos(file: str, mark: yaml.Mark | None) -> Pos:
    if mark is None:
        return Pos(file, 1, 1)
    return Pos(file, mark.line + 1, mark.column + 1)


def _syntax_error(file: str, text: str, err: yaml.YAMLError) -> DiagnosticError:
    if isinstance(err, yaml.reader.ReaderError):
        before = text[: err.position]
        line = before.count("\n") + 1
        col = err.position - (before.rfind("\n") + 1) + 1
        msg = f"YAML syntax error: {err.reason} (character {err.character!r})"
        return DiagnosticError.at(msg, Pos(file, line, col))
    if isinstance(err, yaml.MarkedYAMLError):
        problem = (err.problem or "invalid YAML").replace("'?'", "a mapping key")
        hint = None
        if "'\\t'" in problem or "\t" in problem:
            problem = "a tab character cannot be used for indentation"
            hint = "indent with spaces"
        elif err.context and "single document" in err.context:
            problem = "the file holds more than one YAML document"
            hint = "remove the extra '---' line"
        elif err.context:
            problem = f"{problem} ({err.context}"
            started, at = err.context_mark, err.problem_mark
            if started is not None and at is not None and started.line != at.line:
                problem += f" started at line {started.line + 1}"
            problem += ")"
        mark = err.problem_mark or err.context_mark
        if hint is None and mark is not None and _after_dollar(text, mark.index):
            hint = 'quote a value holding "${...}" inside {...} or [...]'
        return DiagnosticError.at(f"YAML syntax error: {problem}", mark_pos(file, mark), hint)
    return DiagnosticError.at(f"YAML syntax error: {err}", Pos(file, 1, 1))


def _after_dollar(text: str, index: int) -> bool:
    return 0 < index < len(text) and text[index] == "{" and text[index - 1] == "$"


def compose(text: str, file: str) -> Node | None:
    """The single document's node tree (None for an empty document)."""
    # libyaml's composer is ~6x faster; on an error the pure-Python one runs
    # again, so every diagnostic has the same words and position either way.
    fast = getattr(yaml, "CSafeLoader", None)
    if fast is not None:
        try:
            return yaml.compose(text, Loader=fast)
        except yaml.YAMLError:
            pass
    try:
        return yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as err:
        raise _syntax_error(file, text, err) from None


class _Builder:
    def __init__(self, file: str, aliases: AliasBudget) -> None:
        self.file = file
        self.src = Source(file, None)
        self.constructor = SafeConstructor()
        self.active: set[int] = set()
        self.aliases = aliases
        #: Nodes met so far outside any alias: meeting one again is an alias.
        self.seen: set[int] = set()
        self.in_alias = False

    def pos(self, node: Node) -> Pos:
        return mark_pos(self.file, node.start_mark)

    def build(self, node: Node, path: Path_) -> Any:
        if self.in_alias:
            return self.make(node, path)  # counted with the alias it is part of
        key = id(self.aliases.original(node))
        if key not in self.seen:
            self.seen.add(key)
            return self.make(node, path)
        self.aliases.spend(node)
        self.in_alias = True
        try:
            return self.make(node, path)
        finally:
            self.in_alias = False

    def make(self, node: Node, path: Path_) -> Any:
        if isinstance(node, ScalarNode):
            return self.scalar(node, path)
        original = self.aliases.original(node)
        if id(original) in self.active:
            raise DiagnosticError.at(
                "an alias refers to itself (recursive anchor)", self.pos(original)
            )
        self.active.add(id(original))
        try:
            if isinstance(node, SequenceNode):
                return [self.child(item, path + (i,)) for i, item in enumerate(node.value)]
            assert isinstance(node, MappingNode)
            return self.mapping(node, path)
        finally:
            self.active.discard(id(original))

    def child(self, node: Node, path: Path_, key: Node | None = None) -> Any:
        vpos = self.pos(node)
        self.src.value_positions[path] = vpos
        if key is not None:
            kpos = self.pos(key)
            self.src.key_positions[path] = kpos
            block = isinstance(node, MappingNode | SequenceNode) and not node.flow_style
            self.src.positions[path] = kpos if block or vpos.line != kpos.line else vpos
        else:
            self.src.positions[path] = vpos
        return self.build(node, path)

    def scalar(self, node: ScalarNode, path: Path_) -> Any:
        try:
            value = self.constructor.construct_object(node, deep=True)
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None) or node.start_mark
            problem = getattr(err, "problem", None) or str(err)
            hint = "custom YAML tags are not supported" if node.tag.startswith("!") else None
            raise DiagnosticError.at(
                f"YAML error: {problem}", mark_pos(self.file, mark), hint
            ) from None
        if isinstance(value, datetime.date) or not isinstance(value, _PLAIN_TYPES):
            value = node.value
        self.src.scalars[path] = ScalarInfo(
            node.style,
            node.start_mark.line + 1,
            node.start_mark.column + 1,
            node.start_mark.line == node.end_mark.line,
            node.start_mark.buffer[node.start_mark.pointer : node.end_mark.pointer]
            if node.start_mark.buffer
            else "",
        )
        return value

    def key_of(self, key: Node) -> str:
        if not isinstance(key, ScalarNode):
            raise DiagnosticError.at(
                "a mapping key must be a plain name, not a list or mapping", self.pos(key)
            )
        return str(key.value)

    def mapping(self, node: MappingNode, path: Path_) -> dict[str, Any]:
        out: dict[str, Any] = {}
        seen: dict[str, Node] = {}
        merges: list[Node] = []
        for key, value in node.value:
            if isinstance(key, ScalarNode) and key.tag == _MERGE_TAG:
                merges.append(value)
                continue
            name = self.key_of(key)
            if name in seen:
                first = seen[name].start_mark.line + 1
                where = _dotted(path) or "the top level"
                raise DiagnosticError.at(
                    f'duplicate key "{name}" in {where} (first given at line {first})',
                    self.pos(key),
                    "YAML keeps only one; remove or rename the other",
                )
            seen[name] = key
            out[name] = self.child(value, path + (name,), key)
        for merge in merges:
            self.merge_into(out, merge, path)
        return out

    def merge_into(self, out: dict[str, Any], merge: Node, path: Path_) -> None:
        sources = merge.value if isinstance(merge, SequenceNode) else [merge]
        for source in sources:
            if not isinstance(source, MappingNode):
                raise DiagnosticError.at(
                    "a merge key '<<' takes a mapping or a list of mappings", self.pos(source)
                )
            main, self.src = self.src, Source(self.file, None)
            try:
                merged = self.build(source, path)
            finally:
                scratch, self.src = self.src, main
            for name, value in merged.items():
                if name in out:
                    continue
                out[name] = value
                prefix = path + (name,)
                for table in ("positions", "key_positions", "value_positions", "scalars"):
                    mine, theirs = getattr(self.src, table), getattr(scratch, table)
                    for p, v in theirs.items():
                        if p[: len(prefix)] == prefix:
                            mine[p] = v


def _dotted(path: Path_) -> str:
    return ".".join(str(p) for p in path)


def parse(text: str, file: str) -> Source:
    """Parse ``text`` (the contents of ``file``) into a :class:`Source`.

    Raises :class:`DiagnosticError` for syntax errors and duplicate keys.
    An empty document gives ``Source.data is None``.
    """
    node = compose(text, file)
    try:
        return _build(node, _Builder(file, AliasBudget(file)))
    except AliasesUnplaced:
        # Only the composer that marks aliases can say where the one was.
        marked, marks = compose_marked(text)
        return _build(marked, _Builder(file, AliasBudget(file, marks)))


def _build(node: Node | None, builder: _Builder) -> Source:
    if node is not None:
        builder.src.positions[()] = builder.pos(node)
        builder.src.value_positions[()] = builder.pos(node)
        builder.src.data = builder.build(node, ())
    return builder.src
