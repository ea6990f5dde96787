"""The ``modelform state`` operations, as pure functions of a state.

``list``, ``show``, ``rm`` (forget a resource without destroying it) and
``mv`` (rename an address). They never touch a backend: the CLI reads
the state under the lock, calls one of these, and writes the result.
``rm`` and ``mv`` return a new state and leave their argument unchanged.

A resource's children (``service.api/image`` under ``service.api``) go
with it: removed with it, moved with it.
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Sequence

from modelform.state.errors import AddressError, StateError
from modelform.state.model import ResourceState, State
from modelform.state.resource import split_address


def matches(address: str, pattern: str) -> bool:
    """Whether ``address`` is selected by ``pattern``.

    A pattern is an address (selecting it and its children), a bare type
    (``service``), or a glob (``service.diabetes-*``).
    """
    if any(c in pattern for c in "*?["):
        return fnmatch.fnmatchcase(address, pattern)
    if "." not in pattern:
        return address.startswith(pattern + ".")
    return address == pattern or address.startswith(pattern + "/")


def list_addresses(state: State | None, patterns: Sequence[str] = ()) -> list[str]:
    """Addresses in the state, sorted; only those some pattern selects, if any given."""
    if state is None:
        return []
    return [a for a in state.addresses() if not patterns or any(matches(a, p) for p in patterns)]


def show(state: State | None, address: str) -> ResourceState:
    """The recorded resource at ``address`` (a copy)."""
    return _need(state, address).copy()


def rm(state: State, addresses: Sequence[str]) -> tuple[State, list[str]]:
    """A copy without ``addresses`` and their children; also the addresses removed.

    Dependencies on removed resources are dropped from the others. Every
    address must be in the state, or nothing is removed.
    """
    for address in addresses:
        _need(state, address)
    gone = [a for a in state.addresses() if any(_within(a, x) for x in addresses)]
    new = state.copy()
    for address in gone:
        new.remove(address)
    for rs in new.resources.values():
        rs.dependencies = [d for d in rs.dependencies if d not in gone]
    return new, gone


def mv(state: State, src: str, dst: str) -> tuple[State, list[tuple[str, str]]]:
    """A copy with ``src`` (and its children) renamed to ``dst``; also each move made.

    The type cannot change (``service.a`` → ``service.b``, not ``model.b``),
    and nothing may already live at ``dst``. Dependencies naming a moved
    address are rewritten; so is the ``name`` field.
    """
    _need(state, src)
    try:
        src_type, src_name, src_child = split_address(src)
        dst_type, dst_name, dst_child = split_address(dst)
    except StateError as e:
        raise AddressError(str(e)) from None
    if src_type != dst_type:
        raise AddressError(f"cannot move {src} to {dst}: the type differs ({src_type}, {dst_type})")
    if src == dst:
        raise AddressError(f"cannot move {src} onto itself")
    taken = [a for a in state.addresses() if _within(a, dst)]
    if taken:
        raise AddressError(f"cannot move {src} to {dst}: {taken[0]} already exists in the state")
    moves = [(a, dst + a[len(src) :]) for a in state.addresses() if _within(a, src)]
    renamed = dict(moves)
    new = state.copy()
    for old, addr in moves:
        rs = new.resources.pop(old)
        rs.address = addr
        if not src_child and not dst_child:
            if rs.name == src_name:
                rs.name = dst_name
            elif rs.name.startswith(src_name + "/"):
                rs.name = dst_name + rs.name[len(src_name) :]
        new.resources[addr] = rs
    for rs in new.resources.values():
        rs.dependencies = [renamed.get(d, d) for d in rs.dependencies]
    return new, moves


def _within(address: str, root: str) -> bool:
    return address == root or address.startswith(root + "/")


def _need(state: State | None, address: str) -> ResourceState:
    if state is None:
        raise AddressError(f"no resource {address} in the state: there is no state yet")
    rs = state.get(address)
    if rs is None:
        close = difflib.get_close_matches(address, state.addresses(), n=1)
        hint = f"; did you mean {close[0]}?" if close else ""
        raise AddressError(f"no resource {address} in the state{hint}")
    return rs
