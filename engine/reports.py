"""Reports CI systems render: a plan or a drift as JSON, JUnit XML, a
markdown table, or GitHub workflow-command annotations.

Every format is made from one list of :class:`Entry` (one per resource:
its address, type, what happens to it or what drifted, and each attribute
with its declared and live value), built once with the secrets masked, so
no format can show what another masks. ``json`` is not made from entries:
it is exactly what ``-json`` prints (the :class:`~modelform.engine.views.JsonView`
documents), so ``--format json`` is an alias, never a second shape.

Pure functions of a plan: the CLI decides where the text goes (a file with
``--report``, else stdout) and supplies what only it knows — where each
resource is declared, the folder annotations are relative to, the clock.

Which is declared and which is live: in a plan, the planned attributes are
declared and the refreshed ones live; in a drift, state's record (what was
declared when it was applied) is declared and what the provider read is live.
"""

from __future__ import annotations

import difflib
import io
import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from modelform.engine.config import Config
from modelform.engine.diagnostics import Diagnostic, Pos, Severity
from modelform.engine.plan import Change, Drift, Mode, Plan
from modelform.engine.planjson import SENSITIVE
from modelform.engine.provider import Action
from modelform.engine.sensitive import MASK, Redactor
from modelform.engine.values import UNKNOWN
from modelform.engine.views import JsonView


class Format(StrEnum):
    HUMAN = "human"
    JSON = "json"
    JUNIT = "junit"
    MARKDOWN = "markdown"
    GITHUB = "github"


class Subject(StrEnum):
    """What a report is about: ``plan`` (changes) or ``drift``."""

    PLAN = "plan"
    DRIFT = "drift"


#: Where a resource is declared in the project file (None: it is not).
Locate = Callable[[str], Pos | None]
GONE = "(none)"
_HEADLINE = {
    Action.NOOP: "no changes",
    Action.READ: "will be read",
    Action.CREATE: "will be created",
    Action.UPDATE: "will be updated in place",
    Action.REPLACE: "must be replaced",
    Action.DELETE: "will be destroyed",
}
_DRIFTED = {
    "deleted": "has been deleted outside modelform",
    "changed": "has changed outside modelform",
    "adopted": "was found running and adopted into state",
    "orphan": "is running but unknown to state",
}


@dataclass(frozen=True)
class Attr:
    """One attribute that differs; values as displayed, secrets masked."""

    key: str
    declared: str
    live: str


@dataclass(frozen=True)
class Entry:
    """One resource in a report."""

    address: str
    type: str
    #: An action (``create``, ``no-op``…) in a plan; a drift kind or ``in sync``.
    status: str
    #: The resource changes (plan) or drifted (drift): a JUnit failure.
    failed: bool
    headline: str
    attrs: tuple[Attr, ...] = ()
    reasons: tuple[str, ...] = ()
    pos: Pos | None = None

    def detail(self) -> list[str]:
        """Reasons, then one line per attribute: ``port: declared 1, live 2``."""
        values = [f"{a.key}: declared {a.declared}, live {a.live}" for a in self.attrs]
        return [*self.reasons, *values]


@dataclass
class Meta:
    """What only the command knows: when, where, how long, and the folder
    annotation paths are relative to (GitHub wants them from the checkout)."""

    timestamp: datetime = field(default_factory=lambda: datetime.now(UTC))
    hostname: str = "localhost"
    seconds: float = 0.0
    root: Path | None = None
    #: The project file: annotations of resources it no longer declares name it, without a line.
    file: str | None = None


def no_position(address: str) -> Pos | None:
    return None


def resource_locator(config: Config) -> Locate:
    """The position of each address's declaration; a child
    (``service.api/deployment``) or an orphan (``service.api~orphan-42``) is
    at its resource's, something the file no longer declares has none."""

    def locate(address: str) -> Pos | None:
        base = re.split(r"[/~]", address, maxsplit=1)[0]
        rtype, _, name = base.partition(".")
        return config.positions.get((f"{rtype}s", name))

    return locate


# -- entries -------------------------------------------------------------------


class _Shower:
    """Attribute values as text, secrets masked by key and by value."""

    def __init__(self, redactor: Redactor, keys: Iterable[str] = ()) -> None:
        self.redactor = redactor
        self.keys = {*SENSITIVE, *redactor.keys, *keys}

    def __call__(self, key: str, attrs: dict[str, Any] | None) -> str:
        if attrs is None or key not in attrs:
            return GONE
        v = attrs[key]
        if v is UNKNOWN:
            return "(known after apply)"
        if key in self.keys and v not in (None, "", False):
            return MASK
        return json.dumps(self.redactor.value(_displayable(v)), sort_keys=True, default=repr)


def _displayable(v: Any) -> Any:
    if v is UNKNOWN:
        return "(known after apply)"
    if isinstance(v, dict):
        return {k: _displayable(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_displayable(x) for x in v]
    return v


def _attrs(keys: Iterable[str], before: dict[str, Any] | None, after: dict[str, Any] | None,
           show: _Shower, prefix: str = "", declared_after: bool = True) -> list[Attr]:  # fmt: skip
    out = []
    for k in keys:
        b, a = show(k, before), show(k, after)
        declared, live = (a, b) if declared_after else (b, a)
        out.append(Attr(prefix + k, declared, live))
    return out


def change_entry(c: Change, redactor: Redactor, locate: Locate) -> Entry:
    show = _Shower(redactor, c.sensitive)
    if c.action in (Action.CREATE, Action.DELETE):
        keys = sorted((c.after or {}).keys() | (c.before or {}).keys())
    else:
        keys = list(c.changed)
    attrs = _attrs(keys, c.before, c.after, show)
    for ch in c.children:
        if ch.action is not Action.NOOP:
            attrs += _attrs(ch.changed, ch.before, ch.after, show, prefix=f"{ch.name}.")
    failed = c.action not in (Action.NOOP, Action.READ)
    return Entry(
        address=redactor.text(c.address),
        type=c.type,
        status=c.action.value,
        failed=failed,
        headline=_HEADLINE[c.action] + (" (found running, unknown to state)" if c.orphan else ""),
        attrs=tuple(attrs),
        reasons=tuple(redactor.text(r) for r in [*c.reasons, *c.notes]),
        pos=locate(c.address),
    )


def drift_entry(d: Drift, rtype: str, redactor: Redactor, locate: Locate) -> Entry:
    show = _Shower(redactor)
    keys = d.changed or sorted((d.before or {}).keys() | (d.after or {}).keys())
    return Entry(
        address=redactor.text(d.address),
        type=rtype,
        status=d.kind,
        failed=True,
        headline=_DRIFTED.get(d.kind, d.kind),
        attrs=tuple(_attrs(keys, d.before, d.after, show, declared_after=False)),
        pos=locate(d.address),
    )


def _type_of(plan: Plan, address: str) -> str:
    rec = plan.prior.get(address) or plan.refreshed.get(address)
    if rec and rec.get("type"):
        return str(rec["type"])
    return address.split(".", 1)[0]


def plan_entries(plan: Plan, redactor: Redactor, locate: Locate = no_position) -> list[Entry]:
    """One entry per resource the plan covers; a refresh-only plan's are its drift's."""
    if plan.mode is Mode.REFRESH_ONLY:
        return drift_entries(plan, redactor, locate)
    return [change_entry(c, redactor, locate) for c in plan.changes]


def drift_entries(plan: Plan, redactor: Redactor, locate: Locate = no_position) -> list[Entry]:
    """One entry per resource in state (children too) and per object found
    running that state did not know; those that drifted fail."""
    drifted = {d.address: d for d in plan.drift}
    out = []
    for addr in sorted(plan.prior.keys() | drifted.keys()):
        d = drifted.get(addr)
        if d is not None:
            out.append(drift_entry(d, _type_of(plan, addr), redactor, locate))
        else:
            out.append(Entry(redactor.text(addr), _type_of(plan, addr), "in sync", False,
                             "matches state", pos=locate(addr)))  # fmt: skip
    return out


def drift_summary(plan: Plan) -> dict[str, Any]:
    """The ``data`` document of ``drift -json``."""
    return {"drift": bool(plan.drift), "count": len(plan.drift)}


# -- the formats ---------------------------------------------------------------


def render(
    plan: Plan | None,
    fmt: Format,
    subject: Subject,
    redactor: Redactor,
    locate: Locate = no_position,
    meta: Meta | None = None,
) -> str:
    """``plan`` (None: a drift with no state to compare) in ``fmt``; the text
    ends in a newline (an empty github report is empty)."""
    meta = meta or Meta()
    if fmt is Format.JSON:
        return json_report(plan, subject, redactor)
    if fmt is Format.HUMAN:
        raise ValueError("the human view is the view's, not a report's")
    project = plan.project if plan else ""
    if plan is None:
        entries: list[Entry] = []
    elif subject is Subject.DRIFT:
        entries = drift_entries(plan, redactor, locate)
    else:
        entries = plan_entries(plan, redactor, locate)
    headline = summary_line(plan, subject, entries)
    if fmt is Format.JUNIT:
        return junit(entries, subject, project, headline, meta)
    if fmt is Format.MARKDOWN:
        outs = output_rows(plan, redactor) if plan and subject is Subject.PLAN else []
        return markdown(entries, subject, project, headline, outs)
    return github(entries, subject, meta.root, meta.file)


def json_report(plan: Plan | None, subject: Subject, redactor: Redactor) -> str:
    """Exactly the lines ``plan -json`` / ``drift -json`` print."""
    buf = io.StringIO()
    view = JsonView(buf)
    view.redactor = redactor
    if subject is Subject.PLAN and plan is not None:
        view.plan(plan)
    elif plan is not None:
        view.drift(plan)
        view.data(drift_summary(plan), "")
    else:
        view.data({"drift": False, "count": 0}, "")
    return buf.getvalue()


def summary_line(plan: Plan | None, subject: Subject, entries: Sequence[Entry]) -> str:
    failed = sum(e.failed for e in entries)
    if plan is None:
        return "No state: nothing to drift."
    if subject is Subject.DRIFT or plan.mode is Mode.REFRESH_ONLY:
        if not plan.drift:
            return f"No drift: {len(entries)} resource(s) match state."
        return f"{len(plan.drift)} object(s) drifted, of {len(entries)} resource(s)."
    n = plan.counts()
    drifted = f"; {len(plan.drift)} object(s) changed outside modelform" if plan.drift else ""
    if plan.output_changes:
        drifted = f"; {len(plan.output_changes)} output(s) change{drifted}"
    if not failed and not plan.output_changes:
        return f"No changes: the deployment matches the project file{drifted}."
    return f"Plan: {n['add']} to add, {n['change']} to change, {n['destroy']} to destroy{drifted}."


# JUnit ------------------------------------------------------------------------

#: What XML 1.0 cannot hold at all, not even escaped.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _x(text: str) -> str:
    return _NOT_XML.sub("\ufffd", text)


def junit(entries: Sequence[Entry], subject: Subject, project: str, headline: str,
          meta: Meta) -> str:  # fmt: skip
    """Ant's JUnit format (tests/schemas/junit/JUnit.xsd): one ``testsuites``
    holding one ``testsuite``, a ``testcase`` per resource (classname its
    type, name its address), a ``failure`` for each that changes or drifted."""
    failures = sum(e.failed for e in entries)
    root = ET.Element("testsuites")
    suite = ET.SubElement(root, "testsuite", {
        "name": _x(f"modelform {subject.value}" + (f" {project}" if project else "")),
        "package": "modelform", "id": "0",
        "timestamp": meta.timestamp.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S"),
        "hostname": _x(meta.hostname) or "localhost",
        "tests": str(len(entries)), "failures": str(failures), "errors": "0", "skipped": "0",
        "time": f"{meta.seconds:.3f}",
    })  # fmt: skip
    props = ET.SubElement(suite, "properties")
    for name, value in (("project", project), ("subject", subject.value)):
        ET.SubElement(props, "property", {"name": name, "value": _x(value)})
    for e in entries:
        names = {"classname": _x(e.type), "name": _x(e.address), "time": "0"}
        case = ET.SubElement(suite, "testcase", names)
        if e.failed:
            where = f" ({_relative(e.pos.file, meta.root)}:{e.pos.line})" if e.pos else ""
            failure = ET.SubElement(case, "failure", {
                "message": _x(f"{e.address} {e.headline}"),
                "type": "drift" if subject is Subject.DRIFT else e.status,
            })  # fmt: skip
            failure.text = _x("\n".join([f"{e.address} {e.headline}{where}", *e.detail()]) + "\n")
    ET.SubElement(suite, "system-out").text = _x(headline + "\n")
    ET.SubElement(suite, "system-err").text = ""
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, "unicode") + "\n"


# Markdown ---------------------------------------------------------------------

#: What could start markup inside a cell (a link needs ``[``, so ``(`` is plain).
_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|~&])")
#: A value longer than this is cut in a table cell (the JUnit report has it whole).
CELL_VALUE = 80


def md_cell(text: str) -> str:
    """``text`` safe in a GFM table cell: markdown punctuation escaped with a
    backslash (``|`` included), line breaks as ``<br>``."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return "<br>".join(_MD_SPECIAL.sub(r"\\\1", line) for line in lines)


def _cut(value: str) -> str:
    return value if len(value) <= CELL_VALUE else value[: CELL_VALUE - 1] + "…"


def _listed(e: Entry) -> bool:
    """Whether a table row lists the attributes: a drift's changes, and a
    change's when no reason says them already (the planner gives one per
    changed attribute; a create's attributes are all new: the JUnit has them)."""
    return e.status == "changed" or (e.status in ("update", "replace") and not e.reasons)


def _md_values(a: Attr, subject: Subject) -> str:
    """``port: 8890 → 8891``: from what was to what is (drift) or will be (plan)."""
    if subject is Subject.DRIFT:
        return f"{a.key}: {_cut(a.declared)} → {_cut(a.live)}"
    return f"{a.key}: {_cut(a.live)} → {_cut(a.declared)}"


def output_rows(plan: Plan, redactor: Redactor) -> list[tuple[str, str, str]]:
    """(name, action, ``before → after``) of each output that changes; a
    sensitive output's values masked."""
    rows = []
    for o in plan.output_changes:

        def value(v: Any, sensitive: bool = o.sensitive) -> str:
            if v is None:
                return GONE
            if v is UNKNOWN:
                return "(known after apply)"
            if sensitive:
                return MASK
            return json.dumps(redactor.value(_displayable(v)), sort_keys=True, default=repr)

        rows.append((o.name, o.action.value, f"{_cut(value(o.before))} → {_cut(value(o.after))}"))
    return rows


def markdown(
    entries: Sequence[Entry],
    subject: Subject,
    project: str,
    headline: str,
    outputs: Sequence[tuple[str, str, str]] = (),
) -> str:
    """A summary line and, when something changes or drifted, a table of it:
    ``| resource | action | what |`` (``drift`` for a drift report); then
    the outputs that change, ``| output | action | value |``."""
    title = f"**modelform {subject.value}**" + (f" ({md_cell(project)})" if project else "")
    out = [f"{title}: {md_cell(headline)}", ""]
    rows = [e for e in entries if e.failed]
    if rows:
        column = "drift" if subject is Subject.DRIFT else "action"
        out += [f"| resource | {column} | what |", "| --- | --- | --- |"]
        for e in rows:
            what = [e.headline, *e.reasons]
            if _listed(e):
                what += [_md_values(a, subject) for a in e.attrs]
            cells = [e.address, e.status]
            out.append("| " + " | ".join(map(md_cell, cells)) + " | "
                       + "<br>".join(map(md_cell, what)) + " |")  # fmt: skip
        if any(_listed(e) and e.attrs for e in rows):
            before = "recorded in state → live" if subject is Subject.DRIFT else "live → planned"
            out += ["", f"Values: {before}."]
    if outputs:
        out += ["", "| output | action | value |", "| --- | --- | --- |"]
        out += ["| " + " | ".join(map(md_cell, row)) + " |" for row in outputs]
    return "\n".join(out).rstrip("\n") + "\n"


# GitHub workflow commands -------------------------------------------------------


def _gh_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _gh_property(text: str) -> str:
    return _gh_data(text).replace(":", "%3A").replace(",", "%2C")


def annotation(level: str, message: str, pos: Pos | None = None, title: str = "",
               root: Path | None = None, file: str | None = None) -> str:  # fmt: skip
    """One workflow command, ``::error file=F,line=N,col=C,title=T::message``;
    the file relative to ``root`` (the checkout) when it lies inside it."""
    props = []
    path = pos.file if pos else file
    if path:
        props.append(f"file={_gh_property(_relative(path, root))}")
    if pos:
        props += [f"line={pos.line}", f"col={pos.col}"]
    if title:
        props.append(f"title={_gh_property(title)}")
    return f"::{level} {','.join(props)}::{_gh_data(message)}" if props else \
        f"::{level}::{_gh_data(message)}"  # fmt: skip


def _relative(path: str, root: Path | None) -> str:
    if root is None:
        return path
    try:
        return Path(path).resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return path


def _level(e: Entry, subject: Subject) -> str:
    """Drift is an error (the world is not as declared); in a plan, what
    destroys something is a warning and the rest a notice: changes are what a
    pull request is for."""
    if subject is Subject.DRIFT or e.status in _DRIFTED:
        return "error"
    return "warning" if e.status in (Action.DELETE.value, Action.REPLACE.value) else "notice"


def github(entries: Sequence[Entry], subject: Subject, root: Path | None,
           file: str | None = None) -> str:  # fmt: skip
    """An annotation per resource that changes or drifted, at its line."""
    lines = []
    for e in entries:
        if not e.failed:
            continue
        message = "\n".join([f"{e.address} {e.headline}", *e.detail()])
        title = f"{subject.value}: {e.address}"
        lines.append(annotation(_level(e, subject), message, e.pos, title, root, file))
    return "".join(line + "\n" for line in lines)


def diagnostics_github(diags: Sequence[Diagnostic], title: str, root: Path | None) -> str:
    """``validate``'s and ``fmt``'s diagnostics as annotations at their lines."""
    out = []
    for d in diags:
        level = "warning" if d.severity is Severity.WARNING else "error"
        message = d.message + (f" ({d.hint})" if d.hint else "")
        out.append(annotation(level, message, d.pos, title, root) + "\n")
    return "".join(out)


def unformatted(file: str, text: str, formatted: str) -> list[Diagnostic]:
    """``fmt -check``'s findings: one diagnostic at the first line of each
    stretch of ``text`` that formatting would change."""
    old, new = text.splitlines(), formatted.splitlines()
    out = []
    for op, i1, i2, _, _ in difflib.SequenceMatcher(None, old, new, autojunk=False).get_opcodes():
        if op == "equal":
            continue
        line = min(i1, max(len(old) - 1, 0)) + 1
        span = f"lines {i1 + 1}-{i2}" if i2 - i1 > 1 else f"line {line}"
        out.append(Diagnostic(f"{span} not in the canonical format", Pos(file, line, 1),
                              "modelform fmt rewrites it"))  # fmt: skip
    return out
