"""Writes the flag and command tables of docs/operations.md and docs/cli.md from the parsers."""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sssn_client.cli import build_parser as build_cli_parser  # noqa: E402
from sssn_server.__main__ import build_parser as build_server_parser  # noqa: E402

# Every help text ends "[SSSN_VARIABLE] (default: ...)" where it has them; the
# table splits those out into columns of their own.
_VARIABLE = re.compile(r"\s*\[(SSSN_[A-Z_]+)\]")
_DEFAULT = re.compile(r"\s*\(default: (?P<default>.*)\)\s*$")
_SWITCHES = (argparse._StoreTrueAction, argparse._StoreFalseAction)
_SKIPPED = (argparse._HelpAction, argparse._VersionAction, argparse._SubParsersAction)


@dataclass(frozen=True)
class Block:
    """One generated region of a document, between its two markers."""

    doc: Path
    name: str
    render: Callable[[], str]

    @property
    def begin(self) -> str:
        return f"<!-- BEGIN GENERATED: {self.name} (tools/gen_cli_docs.py; do not edit) -->"

    @property
    def end(self) -> str:
        return f"<!-- END GENERATED: {self.name} -->"


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _metavar(action: argparse.Action) -> str:
    if action.choices is not None and action.metavar is None:
        return "|".join(str(choice) for choice in action.choices)
    if isinstance(action.metavar, str):
        return action.metavar
    if not action.option_strings:
        return action.dest.upper()
    return action.option_strings[-1].lstrip("-").upper().replace("-", "_")


def _flag(action: argparse.Action) -> str:
    """`--port PORT`, `--read-only`: how the flag is written on a command line."""
    name = ", ".join(action.option_strings)
    if isinstance(action, _SWITCHES) or action.nargs == 0:
        return name
    return f"{name} {_metavar(action)}"


def _documented(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [action for action in parser._actions if not isinstance(action, _SKIPPED)]


def options_table(parser: argparse.ArgumentParser) -> str:
    """flag | environment | default | meaning, one row per option, in --help order."""
    rows = ["| flag | environment | default | meaning |", "| --- | --- | --- | --- |"]
    for action in _documented(parser):
        meaning = action.help or ""
        variable = _VARIABLE.search(meaning)
        meaning = _VARIABLE.sub("", meaning)
        default = _DEFAULT.search(meaning)
        meaning = _DEFAULT.sub("", meaning)
        if default is not None:
            shown = default["default"]
        else:
            # Switches are off unless given; other options without a stated
            # default have none (TLS files, for instance).
            shown = "off" if isinstance(action, _SWITCHES) else "none"
        env = f"`{variable[1]}`" if variable else ""
        rows.append(
            f"| `{_cell(_flag(action))}` | {env} | {_cell(shown)} | {_cell(meaning.strip())} |"
        )
    return "\n".join(rows)


def _arguments(parser: argparse.ArgumentParser) -> str:
    """A command's arguments as a usage line writes them, `[--kind KIND]` for options."""
    grouped: dict[int, argparse._MutuallyExclusiveGroup] = {}
    for group in parser._mutually_exclusive_groups:
        for action in group._group_actions:
            grouped[id(action)] = group
    shown: set[int] = set()
    parts = []
    for action in _documented(parser):
        if id(action) in grouped:
            group = grouped[id(action)]
            if id(group) not in shown:
                shown.add(id(group))
                choices = " | ".join(_flag(member) for member in group._group_actions)
                parts.append(f"({choices})" if group.required else f"[{choices}]")
            continue
        if not action.option_strings:
            metavar = _metavar(action)
            parts.append(f"[{metavar}]" if action.nargs == "?" else metavar)
        elif action.required:
            parts.append(_flag(action))
        else:
            repeat = "..." if isinstance(action, argparse._AppendAction) else ""
            parts.append(f"[{_flag(action)}]{repeat}")
    return " ".join(parts)


def commands_table(parser: argparse.ArgumentParser) -> str:
    """command | arguments | what it does, one row per subcommand, in --help order."""
    (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    summaries = {action.dest: action.help or "" for action in commands._choices_actions}
    rows = ["| command | arguments | what it does |", "| --- | --- | --- |"]
    for name, command in commands.choices.items():
        arguments = _arguments(command)
        cell = f"`{_cell(arguments)}`" if arguments else ""
        rows.append(f"| `{name}` | {cell} | {_cell(summaries[name])} |")
    return "\n".join(rows)


BLOCKS = (
    Block(
        ROOT / "docs" / "operations.md",
        "sssn-server flags",
        lambda: options_table(build_server_parser()),
    ),
    Block(ROOT / "docs" / "cli.md", "sssn options", lambda: options_table(build_cli_parser())),
    Block(ROOT / "docs" / "cli.md", "sssn commands", lambda: commands_table(build_cli_parser())),
)


def render(document: str, block: Block) -> str:
    """`document` with the text between the block's markers replaced by the current table.

    Raises:
        SystemExit: if the markers are missing or out of order.
    """
    start, end = document.find(block.begin), document.find(block.end)
    if start < 0 or end < start:
        raise SystemExit(f"the markers {block.begin!r} and {block.end!r} are missing")
    head = document[: start + len(block.begin)]
    return f"{head}\n{block.render()}\n{document[end:]}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 if a committed table differs from its parser",
    )
    args = parser.parse_args(argv)
    stale = []
    for doc in dict.fromkeys(block.doc for block in BLOCKS):
        current = doc.read_text(encoding="utf-8")
        wanted = current
        for block in BLOCKS:
            if block.doc == doc:
                wanted = render(wanted, block)
        if wanted == current:
            continue
        stale.append(doc)
        if not args.check:
            doc.write_text(wanted, encoding="utf-8")
            print(f"updated {doc.relative_to(ROOT)}")
    if args.check and stale:
        names = ", ".join(str(doc.relative_to(ROOT)) for doc in stale)
        print(f"{names} stale: run `make docs`", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
