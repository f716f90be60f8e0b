"""MkDocs hook: the CLI reference, generated at every build so it can never drift from the
code. ``<!-- cli-reference -->`` becomes one section per subcommand of
``scratchlab.cli.build_parser`` (help, usage, arguments); ``<!-- exit-codes -->`` the table of
exit codes, from the ``exit_code`` of every ``ScratchlabError`` subclass in the package."""

from __future__ import annotations

import argparse
import importlib
import inspect
import pkgutil

MARKER = "<!-- cli-reference -->"
EXIT_CODES = "<!-- exit-codes -->"
WIDTH = 80


def _usage(parser: argparse.ArgumentParser) -> str:
    formatter = argparse.HelpFormatter(parser.prog, width=WIDTH)
    formatter.add_usage(parser.usage, parser._actions, parser._mutually_exclusive_groups)
    return formatter.format_help().strip()


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _argument(action: argparse.Action) -> tuple[str, str]:
    """The argument as typed (``--trials N``, ``overrides ...``) and its description."""
    if action.option_strings:
        metavar = "" if action.nargs == 0 else f" {action.metavar or action.dest.upper()}"
        name = ", ".join(f"`{option}{metavar}`" for option in action.option_strings)
    else:
        name = f"`{action.metavar or action.dest}`" + (" ..." if action.nargs in ("*", "+") else "")
    text = (action.help or "").replace("%(default)s", str(action.default))
    if action.required and action.option_strings:
        text += " (required)"
    elif (action.option_strings and action.default not in (None, False, argparse.SUPPRESS)
          and "default" not in text):
        text += f" (default: {action.default})"
    return name, text.strip()


def _section(name: str, summary: str, parser: argparse.ArgumentParser) -> str:
    lines = [f"## `scratchlab {name}`", "", summary[:1].upper() + summary[1:] + ".", "",
             "```text", _usage(parser), "```", ""]
    rows = [_argument(a) for a in parser._actions
            if not isinstance(a, argparse._HelpAction) and a.help != argparse.SUPPRESS]
    if rows:
        lines += ["| argument | what it does |", "|---|---|"]
        lines += [f"| {_cell(arg)} | {_cell(text)} |" for arg, text in rows]
        lines.append("")
    return "\n".join(lines)


def render() -> str:
    from scratchlab.cli import build_parser

    parser = build_parser()
    (subparsers,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    summaries = {choice.dest: choice.help or "" for choice in subparsers._choices_actions}
    names = ", ".join(f"[`{name}`](#scratchlab-{name})" for name in subparsers.choices)
    parts = ["```text", _usage(parser), "```", "", f"Subcommands: {names}.", ""]
    parts += [_section(name, summaries.get(name, ""), sub)
              for name, sub in subparsers.choices.items()]
    return "\n".join(parts)


def _subclasses(cls: type) -> list[type]:
    return [cls] + [c for sub in cls.__subclasses__() for c in _subclasses(sub)]


def exit_codes() -> str:
    """Every error class of the package by exit code (its docstring's first line), and 130."""
    import scratchlab
    from scratchlab.core.entry import INTERRUPTED_EXIT
    from scratchlab.core.errors import ScratchlabError

    for module in pkgutil.walk_packages(scratchlab.__path__, "scratchlab."):
        importlib.import_module(module.name)
    rows = sorted(
        (cls.exit_code, f"`{cls.__module__}.{cls.__qualname__}`",
         (inspect.getdoc(cls) or "").split("\n")[0])
        for cls in _subclasses(ScratchlabError) if not cls.__name__.startswith("_"))
    lines = ["| exit | error | when |", "|---|---|---|"]
    lines += [f"| {code} | {name} | {_cell(text)} |" for code, name, text in rows]
    lines.append(f"| {INTERRUPTED_EXIT} | `KeyboardInterrupt` (Ctrl-C or SIGTERM) | "
                 "interrupted; a run in progress ends KILLED |")
    return "\n".join(lines)


def on_page_markdown(markdown: str, page, config, files) -> str:  # noqa: ARG001 - MkDocs hook
    if MARKER in markdown:
        markdown = markdown.replace(MARKER, render())
    if EXIT_CODES in markdown:
        markdown = markdown.replace(EXIT_CODES, exit_codes())
    return markdown
