"""Human and JSON views behind one interface.

Commands never print directly: they call a view. ``-json`` selects
:class:`JsonView`, which writes one JSON document per result (and one JSON
line per apply event), never a second code path.
"""

from __future__ import annotations

import json
import os
import re
import sys
import threading
import time
from typing import Any, TextIO

from modelform.engine import outputs
from modelform.engine.diagnostics import Diagnostic
from modelform.engine.plan import Change, Drift, Mode, Plan
from modelform.engine.planjson import SENSITIVE, change_json, drift_json, plan_json
from modelform.engine.provider import Action
from modelform.engine.sensitive import MASK, Redactor
from modelform.engine.values import UNKNOWN

_VERB = {
    Action.CREATE: "will be created",
    Action.UPDATE: "will be updated in place",
    Action.REPLACE: "must be replaced",
    Action.DELETE: "will be destroyed",
}
_COLOR = {
    Action.CREATE: "green",
    Action.UPDATE: "yellow",
    Action.REPLACE: "magenta",
    Action.DELETE: "red",
}
#: What rich's Text dropped from every string: BEL, BS, VT, FF, CR.
_DROP = dict.fromkeys((7, 8, 11, 12, 13))
_ANSI = {"bold": "\x1b[1m", "dim": "\x1b[2m", "red": "\x1b[31m", "green": "\x1b[32m",
         "yellow": "\x1b[33m", "magenta": "\x1b[35m", "end": "\x1b[0m"}  # fmt: skip
_CODE = re.compile(r"(\x1b\[[0-9;]*m)")
_PAST = {"create": "Creation", "update": "Modifications", "replace": "Replacement",
         "delete": "Destruction"}  # fmt: skip


def show(key: str, v: Any) -> str:
    if v is UNKNOWN:
        return "(known after apply)"
    if key in SENSITIVE and v:
        return "(sensitive value)"
    return json.dumps(v, sort_keys=True, default=repr)


class _Styles:
    """The escape codes a view puts around styled text: all empty when the
    stream is not a terminal."""

    def __init__(self, on: bool) -> None:
        code = _ANSI if on else dict.fromkeys(_ANSI, "")
        self.bold, self.dim, self.end = code["bold"], code["dim"], code["end"]
        self.red, self.green, self.yellow = code["red"], code["green"], code["yellow"]
        self.action = {a: code[name] for a, name in _COLOR.items()}

    def each_line(self, code: str, text: str) -> str:
        """``text`` in the style ``code``, closed and reopened at each line
        end, so every line stands alone (a pager, ``grep``)."""
        if not code or "\n" not in text:
            return f"{code}{text}{self.end}"
        return code + text.replace("\n", f"{self.end}\n{code}") + self.end


def _expand_tabs(text: str) -> str:
    """Tabs to spaces (stops every 8 columns), not counting colour codes."""
    if "\x1b" not in text:
        return text.expandtabs(8)
    lines = []
    for line in text.split("\n"):
        col, parts = 0, []
        for part in _CODE.split(line):
            if not part.startswith("\x1b"):
                part = (" " * (col % 8) + part).expandtabs(8)[col % 8 :]
                col += len(part)
            parts.append(part)
        lines.append("".join(parts))
    return "\n".join(lines)


def in_ci() -> bool:
    """``CI`` set (GitHub Actions, GitLab CI and most others set ``CI=true``),
    and not to ``false``/``0``/empty: no colour, no prompt."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _styles(stream: TextIO) -> _Styles:
    """Colour only for a terminal, and not when NO_COLOR is set (no-color.org),
    TERM is ``dumb`` or CI is set (a CI log, even through a pseudo-terminal)."""
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb" or in_ci():
        return _Styles(False)
    try:
        return _Styles(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return _Styles(False)


class View:
    #: Secret values and keys masked in everything this view prints; the
    #: commands add to it as they learn secrets (config, plan, state).
    redactor: Redactor

    def __init__(self) -> None:
        self.redactor = Redactor()

    def diagnostics(self, diags: list[Diagnostic]) -> None: ...
    def error(self, message: str, detail: str = "") -> None: ...
    def message(self, text: str) -> None: ...
    def plan(self, plan: Plan) -> None: ...
    def drift(self, plan: Plan) -> None: ...
    def event(self, address: str, event: str, detail: str) -> None: ...
    def applied(
        self,
        counts: dict[str, int],
        ok: bool,
        failed: dict[str, str],
        logs: dict[str, str],
        skipped: list[str],
        cancelled: list[str],
        reason: str = "interrupted",  # why the changes in ``cancelled`` were not started
        destroy: bool = False,  # a destroy: worded as one
    ) -> None: ...
    def data(self, value: Any, human: str) -> None: ...


class HumanView(View):
    """Terraform-like text. Each call builds its whole text first and hands it
    to :meth:`_write`, the one place output leaves the view (one write and a
    flush per call), so a plan of thousands of resources is one write.

    Styles are plain ANSI codes, used only when the stream is a terminal,
    ``NO_COLOR`` is unset and ``TERM`` is not ``dumb``; otherwise the text
    carries no codes at all. Attribute values are formatted by :func:`show`
    alone.
    """

    def __init__(
        self, out: TextIO | None = None, err: TextIO | None = None, no_color: bool = False
    ) -> None:
        """``no_color`` (``-no-color``): no codes at all, even on a terminal."""
        super().__init__()
        self._out = out or sys.stdout
        self._err = err or sys.stderr
        self._style_out = _Styles(False) if no_color else _styles(self._out)
        self._style_err = _Styles(False) if no_color else _styles(self._err)
        self._started: dict[str, float] = {}
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()

    def _write(self, text: str, *, err: bool = False) -> None:
        """Write ``text`` (ending in a newline) to stdout or stderr: every
        string the view prints passes here. Like the terminal library this
        view used before, it drops BEL, BS, VT, FF and CR, and expands tabs."""
        text = self.redactor.text(text.translate(_DROP))
        if "\t" in text:
            text = _expand_tabs(text)
        stream = self._err if err else self._out
        with self._write_lock:
            stream.write(text)
            stream.flush()

    def diagnostics(self, diags: list[Diagnostic]) -> None:
        s = self._style_err
        self._write("".join(s.each_line(s.red, str(d)) + "\n" for d in diags), err=True)

    def error(self, message: str, detail: str = "") -> None:
        s = self._style_err
        text = s.each_line(s.red, f"Error: {message}") + "\n"
        self._write(text + f"{detail}\n" if detail else text, err=True)

    def message(self, text: str) -> None:
        self._write(text + "\n")

    def data(self, value: Any, human: str) -> None:
        self._write(human + "\n")

    def _change(self, c: Change, s: _Styles, out: list[str]) -> None:
        color = s.action[c.action]
        out.append(f"  {s.bold}# {c.address}{s.end} {_VERB[c.action]}\n")
        for r in c.reasons:
            out.append(f"  {s.each_line(s.dim, f'#   {r}')}\n")
        for n in c.notes:
            out.append(f"  {s.each_line(s.dim, f'#   ({n})')}\n")
        name = c.address.split(".", 1)[-1]
        out.append(f'{color}{c.action.symbol:>3}{s.end} {c.type} "{name}" {{\n')
        before, after = self._masked(c.before, c.sensitive), self._masked(c.after, c.sensitive)
        keys = sorted(before.keys() | after.keys())
        if c.action is Action.CREATE:
            plus = f"      {s.green}+{s.end} "
            out.extend(f"{plus}{k} = {show(k, after.get(k))}\n" for k in keys)
        elif c.action is Action.DELETE:
            minus = f"      {s.red}-{s.end} "
            out.extend(f"{minus}{k} = {show(k, before.get(k))}\n" for k in keys)
        else:
            tilde = f"      {s.yellow}~{s.end} "
            changed = set(c.changed)
            for k in keys:
                if k in changed:
                    b, a = show(k, before.get(k)), show(k, after.get(k))
                    out.append(f"{tilde}{k} = {b} → {a}\n")
        for ch in c.children:
            if ch.action is Action.NOOP:
                continue
            verb = _VERB[ch.action]
            out.append(f"      {s.action[ch.action]}{ch.action.symbol}{s.end} {ch.type} "
                       f'"{ch.name}" {verb}\n')  # fmt: skip
            cb, ca = self._masked(ch.before, c.sensitive), self._masked(ch.after, c.sensitive)
            for k in ch.changed:
                out.append(f"          {k} = {show(k, cb.get(k))} → {show(k, ca.get(k))}\n")
        out.append("    }\n")

    @staticmethod
    def _masked(attrs: dict[str, Any] | None, keys: list[str]) -> dict[str, Any]:
        """Attributes with the provider's sensitive keys masked."""
        if not attrs or not keys:
            return attrs or {}
        return {k: (MASK if k in keys and v not in (None, "") else v) for k, v in attrs.items()}

    def drift(self, plan: Plan) -> None:
        if plan.drift:
            out: list[str] = []
            self._drifts(plan, out)
            self._write("".join(out))

    def _drifts(self, plan: Plan, out: list[str]) -> None:
        s = self._style_out
        out.append(f"\n{s.bold}Objects have changed outside of modelform{s.end}\n\n")
        for d in plan.drift:
            self._drift(d, s, out)

    def _drift(self, d: Drift, s: _Styles, out: list[str]) -> None:
        what = {"deleted": "has been deleted", "changed": "has changed",
                "adopted": "was found running and adopted into state",
                "orphan": "is running but unknown to state"}[d.kind]  # fmt: skip
        out.append(f"  {s.bold}# {d.address}{s.end} {what}\n")
        for k in d.changed:
            b = show(k, (d.before or {}).get(k))
            a = show(k, (d.after or {}).get(k))
            out.append(f"      {s.yellow}~{s.end} {k} = {b} → {a}\n")

    def plan(self, plan: Plan) -> None:
        s = self._style_out
        out: list[str] = []
        if plan.drift:
            self._drifts(plan, out)
        acts = plan.actionable
        if plan.mode is Mode.REFRESH_ONLY:
            if not plan.drift:
                out.append(f"\n{s.green}No changes.{s.end} The state matches the real world.\n")
            else:
                out.append("\nApplying this refresh-only plan updates the state to match.\n")
        elif not acts and not plan.output_changes:
            out.append(f"\n{s.green}No changes.{s.end} The deployment matches the project file.\n")
        elif not acts:
            out.append(outputs.plan_text(plan.output_changes, s.action, s.end))
            out.append("\nYou can apply this plan to save these new output values to the state, "
                       "without changing any real infrastructure.\n")  # fmt: skip
        else:
            out.append("\nmodelform will perform the following actions:\n\n")
            for c in acts:
                self._change(c, s, out)
                out.append("\n")
            n = plan.counts()
            out.append(
                f"{s.bold}Plan:{s.end} {n['add']} to add, {n['change']} to change, "
                f"{n['destroy']} to destroy.\n"
            )
            out.append(outputs.plan_text(plan.output_changes, s.action, s.end))
        self._write("".join(out))

    def event(self, address: str, event: str, detail: str) -> None:
        with self._lock:
            if event == "start":
                self._started[address] = time.monotonic()
                verb = {"create": "Creating", "update": "Modifying", "replace": "Replacing",
                        "delete": "Destroying"}.get(detail, detail)  # fmt: skip
                self._write(f"{address}: {verb}...\n")
            elif event == "done":
                self._write(f"{address}: complete after {detail}\n")
            elif event == "failed":
                s = self._style_err
                self._write(s.each_line(s.red, f"{address}: failed: {detail}") + "\n", err=True)
            elif event == "log":
                since = time.monotonic() - self._started.get(address, time.monotonic())
                self._write(f"{address}: [{since:.0f}s] {detail}\n")

    def applied(  # type: ignore[no-untyped-def]
        self, counts, ok, failed, logs, skipped, cancelled, reason="interrupted", destroy=False
    ) -> None:
        s = self._style_err
        err: list[str] = []
        for addr, why in failed.items():
            err.append("\n" + s.each_line(s.red, f"Error: {addr}: {why}") + "\n")
            if logs.get(addr):
                err.append(f"{logs[addr]}\n")
        if skipped:
            err.append(f"Skipped (a dependency failed): {', '.join(skipped)}\n")
        if cancelled:
            err.append(f"Not started ({reason}): {', '.join(cancelled)}\n")
        if err:
            self._write("".join(err), err=True)
        s = self._style_out
        if destroy:  # as Terraform words it
            word = "Destroy complete!" if ok else "Destroy incomplete."
            self._write(f"\n{s.bold}{word}{s.end} Resources: {counts['destroy']} destroyed.\n")
            return
        word = "Apply complete!" if ok else "Apply incomplete."
        self._write(
            f"\n{s.bold}{word}{s.end} Resources: {counts['add']} added, "
            f"{counts['change']} changed, {counts['destroy']} destroyed.\n"
        )


class JsonView(View):
    def __init__(self, out: TextIO | None = None) -> None:
        super().__init__()
        self.out = out or sys.stdout
        self._lock = threading.Lock()

    def _emit(self, doc: dict[str, Any]) -> None:
        if self.redactor:
            doc = self.redactor.value(doc)
        with self._lock:
            self.out.write(json.dumps(doc, sort_keys=True, default=repr) + "\n")
            self.out.flush()

    def diagnostics(self, diags: list[Diagnostic]) -> None:
        self._emit({"type": "diagnostics", "diagnostics": [d.to_json() for d in diags]})

    def error(self, message: str, detail: str = "") -> None:
        self._emit({"type": "error", "message": message, "detail": detail})

    def message(self, text: str) -> None:
        self._emit({"type": "message", "message": text})

    def data(self, value: Any, human: str) -> None:
        self._emit({"type": "data", "data": value})

    def plan(self, plan: Plan) -> None:
        self._emit({"type": "plan", "plan": plan_json(plan)})

    def drift(self, plan: Plan) -> None:
        self._emit({"type": "drift", "drift": [drift_json(d) for d in plan.drift]})

    def event(self, address: str, event: str, detail: str) -> None:
        self._emit({"type": "apply_event", "address": address, "event": event, "detail": detail})

    def applied(  # type: ignore[no-untyped-def]
        self, counts, ok, failed, logs, skipped, cancelled, reason="interrupted", destroy=False
    ) -> None:
        self._emit({"type": "apply_result", "ok": ok, "summary": counts, "failed": failed,
                    "logs": logs, "skipped": skipped, "cancelled": cancelled})  # fmt: skip


__all__ = ["HumanView", "JsonView", "View", "change_json"]
