"""Usage errors (unknown flag, bad value, missing argument): one line, exit 1.

click exits 2 on a usage error, but 2 means "changes present" / "drift
found" to CI (``plan -detailed-exitcode``, ``drift``), so a misspelt flag
would read as drift. :func:`run` runs the app with click's standalone mode
off and turns every usage error, for every command alike, into one line
on stderr — what is wrong, a did-you-mean, and where the help is — and
exit code 1, as Terraform does::

    Error: no such option: -no-colr (did you mean -no-color?) — see modelform plan --help

Exit codes other than usage errors are the commands' own (:class:`Exit`).
"""

from __future__ import annotations

import difflib
import re
import sys
from collections.abc import Sequence
from typing import Any

import typer

from modelform.engine.exitcodes import Exit

try:  # newer typer parses with its own copy of click, and raises its exceptions
    from typer._click import exceptions as clickx
except ImportError:  # pragma: no cover - older typer: click itself
    from click import exceptions as clickx  # type: ignore[no-redef]

PROG = "modelform"


def run(app: typer.Typer, args: Sequence[str] | None = None) -> int:
    """Run ``app`` on ``args`` (default: the command line); the exit code."""
    argv = list(sys.argv[1:] if args is None else args)
    try:
        rv = app(args=argv, prog_name=PROG, standalone_mode=False)
    except clickx.UsageError as e:
        if type(e).__name__ == "NoArgsIsHelpError":  # `modelform` alone: the help, on stderr
            e.show()
        else:
            print(f"Error: {usage_line(e, argv, app)}", file=sys.stderr)
        return Exit.ERROR
    except clickx.ClickException as e:  # not a usage error (e.g. a file click opens)
        e.show()
        return e.exit_code
    except typer.Abort:  # a prompt ended by Ctrl-D or Ctrl-C
        print("Error: aborted", file=sys.stderr)
        return Exit.ERROR
    return rv if isinstance(rv, int) else Exit.OK


def usage_line(e: clickx.UsageError, argv: Sequence[str], app: typer.Typer) -> str:
    """``no such option: -x (did you mean -y?) — see modelform plan --help``."""
    text = " ".join(e.format_message().split())
    unknown_command = re.match(r"No such command '([^']*)'", text)
    if isinstance(e, clickx.NoSuchOption):
        what = unknown_option(e, argv)
        known = option_names(e.ctx.command) if e.ctx else []
        message = f"no such option: {what}{did_you_mean(what, known)}"
    elif unknown_command and e.ctx is not None and hasattr(e.ctx.command, "list_commands"):
        what = unknown_command.group(1)
        known = e.ctx.command.list_commands(e.ctx)
        message = f"no such command: {what}{did_you_mean(what, known)}"
    else:
        message = (text[:1].lower() + text[1:] if text[1:2].islower() else text).rstrip(".")
    where = e.ctx.command_path if e.ctx else command_path(app, argv)
    return f"{message} — see {where} --help"


def command_path(app: typer.Typer, argv: Sequence[str]) -> str:
    """``modelform state rm``: the commands named in ``argv``, for an error without context."""
    words, command = [PROG], typer.main.get_command(app)
    for arg in argv:
        sub = getattr(command, "commands", {}).get(arg)
        if sub is not None:
            words.append(arg)
            command = sub
    return " ".join(words)


def unknown_option(e: clickx.NoSuchOption, argv: Sequence[str]) -> str:
    """The flag as the user typed it (without ``=value``).

    click tries a single-dash word it does not know (``-no-colr``) as a
    cluster of short options and reports only the first (``-n``): the word
    the user typed is the argument that starts with that short option.
    """
    name = e.option_name
    if len(name) == 2 and not name.startswith("--"):
        for arg in argv:
            word = arg.split("=", 1)[0]
            if word != name and word.startswith(name) and not word.startswith("--"):
                return word
    return name


def option_names(command: Any) -> list[str]:
    """Every flag of a click command, both spellings, and ``--help``."""
    names = [o for p in command.params for o in (*p.opts, *p.secondary_opts) if o[:1] == "-"]
    return names + ["--help"]


def did_you_mean(word: str, known: list[str]) -> str:
    """`` (did you mean -no-color?)``, preferring flags spelt with as many dashes."""
    alike = [k for k in known if k.startswith("--") == word.startswith("--")]
    close = difflib.get_close_matches(word, alike, n=3) or difflib.get_close_matches(word, known)
    return f" (did you mean {' or '.join(close)}?)" if close else ""
