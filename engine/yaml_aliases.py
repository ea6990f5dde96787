"""A bound on what YAML aliases may make, and where each alias was written.

PyYAML's composer resolves ``*name`` to the very node its anchor names, so a
20-line file of lists of aliases to lists of aliases ("billion laughs")
describes billions of values: turning it into plain data would run out of time
and memory. :class:`AliasBudget` lets aliases make at most
:data:`ALIAS_BUDGET` values in one document (far more than a shared ``env``
map reused by a few services needs) and refuses the alias that would go past
it *before* anything of it is built.

The composers drop where an alias was written (the node an alias gives back is
the anchored one, with the anchor's marks). That is only needed for the error,
so :func:`compose_marked` composes again, on that path alone, with
:class:`_MarkingLoader`, whose aliases are shallow copies carrying their own
marks.

Must not be used to decide what a value is: sizes here are upper bounds
(a merge key's list of mappings counts the list too).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import yaml
from yaml.events import AliasEvent
from yaml.nodes import MappingNode, Node, SequenceNode

from modelform.engine.diagnostics import DiagnosticError, Pos

#: Values (scalars, lists, mappings) aliases may make in one document, all
#: aliases together.
ALIAS_BUDGET = 10_000


class AliasesUnplaced(Exception):
    """The budget ran out on a tree without alias marks: compose it again with
    :func:`compose_marked` and build that to get the diagnostic at the alias."""


@dataclass
class Marks:
    """What :func:`compose_marked` knows about aliases and anchors."""

    #: id of an alias's copy → the anchored node it stands for.
    alias_of: dict[int, Node] = field(default_factory=dict)
    #: id of an alias's copy or of an anchored node → the anchor's name.
    names: dict[int, str] = field(default_factory=dict)


class _MarkingLoader(yaml.SafeLoader):
    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.alias_marks = Marks()

    def compose_node(self, parent: Node | None, index: int) -> Node | None:
        if not self.check_event(AliasEvent):
            return super().compose_node(parent, index)
        event = self.peek_event()
        target = super().compose_node(parent, index)
        alias = copy.copy(target)  # shares .value: nothing is expanded here
        assert alias is not None and target is not None  # an alias always names a node
        alias.start_mark, alias.end_mark = event.start_mark, event.end_mark
        self.alias_marks.alias_of[id(alias)] = target
        self.alias_marks.names[id(alias)] = str(event.anchor)
        return alias


def compose_marked(text: str) -> tuple[Node | None, Marks]:
    """The document's node tree with every alias a copy that has its own marks.

    Only for a text :func:`yaml_positions.compose` has accepted: it is slower
    (pure Python) and turns no YAML error into a diagnostic."""
    loader = _MarkingLoader(text)
    try:
        node = loader.get_single_node()
        for name, anchored in loader.anchors.items():
            loader.alias_marks.names.setdefault(id(anchored), name)
        return node, loader.alias_marks
    finally:
        loader.dispose()


class AliasBudget:
    """Counts the values aliases make, in the order a builder meets them."""

    def __init__(self, file: str, marks: Marks | None = None) -> None:
        self.file = file
        self.marks = marks
        self.made = 0
        self._sizes: dict[int, int] = {}

    def original(self, node: Node) -> Node:
        """The anchored node an alias stands for (``node`` itself otherwise)."""
        if self.marks is None:
            return node
        return self.marks.alias_of.get(id(node), node)

    def spend(self, alias: Node) -> None:
        """Count what building ``alias`` (met again, so reached through an
        alias) makes; refuse it if that takes the document past the budget."""
        size = self._size(self.original(alias))
        self.made += size
        if self.made <= ALIAS_BUDGET:
            return
        if self.marks is None:
            raise AliasesUnplaced
        name = self.marks.names.get(id(alias), "")
        what = f"alias *{name}" if name else "an alias"
        mark = alias.start_mark
        pos = Pos(self.file, mark.line + 1, mark.column + 1)
        if size > ALIAS_BUDGET:
            raise DiagnosticError.at(
                f"{what} expands to more than {ALIAS_BUDGET} values",
                pos,
                "YAML anchors cannot be nested this deeply here; write the values out",
            )
        raise DiagnosticError.at(
            f"{what} makes the aliases in this file expand to more than {ALIAS_BUDGET} values",
            pos,
            "YAML anchors cannot be nested or reused this much here; write the values out",
        )

    def _size(self, node: Node) -> int:
        """Values ``node`` makes when built, capped just past the budget;
        each distinct node is counted once, so this never expands anything."""
        key = id(node)
        known = self._sizes.get(key)
        if known is not None:
            return known
        self._sizes[key] = 1  # met again below it: a recursive alias, which the builder reports
        total = 1
        children: list[Node] = []
        if isinstance(node, SequenceNode):
            children = node.value
        elif isinstance(node, MappingNode):
            children = [value for _, value in node.value]
        for child in children:
            total += self._size(self.original(child))
            if total > ALIAS_BUDGET:
                total = ALIAS_BUDGET + 1
                break
        self._sizes[key] = total
        return total
