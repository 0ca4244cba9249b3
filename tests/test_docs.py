"""The manuals stay true: generated tables match the parsers, and every link leads somewhere."""

from __future__ import annotations

import re
import runpy
from pathlib import Path
from typing import Any

import pytest

from sssn_client.cli import EXIT_CODES

ROOT = Path(__file__).resolve().parent.parent

# The front door, the manuals it links and the deploy guide: each link in
# them must name a file of the repository, and an anchor a heading of it.
LINKED = [
    ROOT / "README.md",
    *sorted((ROOT / "docs").glob("*.md")),
    ROOT / "deploy" / "README.md",
]
_LINK = re.compile(r"\]\((?P<target>[^)\s]+)\)")
_HEADING = re.compile(r"^#{1,6} (?P<title>.+?)\s*$")


@pytest.fixture(scope="module")
def gen_cli_docs() -> dict[str, Any]:
    return runpy.run_path(str(ROOT / "tools" / "gen_cli_docs.py"))


def test_generated_tables_match_the_parsers(gen_cli_docs: dict[str, Any]) -> None:
    for block in gen_cli_docs["BLOCKS"]:
        committed = block.doc.read_text(encoding="utf-8")
        wanted = gen_cli_docs["render"](committed, block)
        name = block.doc.relative_to(ROOT)
        assert committed == wanted, f"{name}: the {block.name} table is stale: run `make docs`"


def test_the_flag_table_has_every_server_flag(gen_cli_docs: dict[str, Any]) -> None:
    from sssn_server.__main__ import build_parser

    table = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    for action in build_parser()._actions:
        for flag in action.option_strings:
            if flag not in ("-h", "--help", "--version"):
                assert f"`{flag}" in table, flag


def test_the_exit_status_table_lists_every_code() -> None:
    rows = {
        int(match[1]): match[2]
        for match in re.finditer(
            r"^\| (\d+) \| `?([A-Z_]*)", (ROOT / "docs" / "cli.md").read_text(), re.M
        )
    }
    for error_class, code, label in EXIT_CODES:
        assert rows.get(code) == label.split(":")[0], (error_class.__name__, code)
    assert {0, 1, 2, 130} <= rows.keys()


def _anchors(document: Path) -> set[str]:
    """GitHub's anchors for the headings of a Markdown file."""
    anchors = set()
    fenced = False
    for line in document.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            fenced = not fenced
        heading = None if fenced else _HEADING.match(line)
        if heading:
            title = heading["title"].lower().replace("`", "")
            anchors.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return anchors


@pytest.mark.parametrize("document", LINKED, ids=lambda path: str(path.relative_to(ROOT)))
def test_links_lead_somewhere(document: Path) -> None:
    broken = []
    for match in _LINK.finditer(document.read_text(encoding="utf-8")):
        target = match["target"]
        if re.match(r"^[a-z]+:", target):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        linked = (document.parent / path).resolve() if path else document
        missing_anchor = anchor and linked.suffix == ".md" and anchor not in _anchors(linked)
        if not linked.exists() or missing_anchor:
            broken.append(target)
    assert not broken, f"{document.relative_to(ROOT)}: links to nothing: {broken}"
