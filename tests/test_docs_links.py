"""The documentation's links, checked: every relative link and image in README.md, docs/**/*.md,
benchmarks/RESULTS.md and tests/corpora/README.md points at a file that exists, and a `#fragment` into a
Markdown file names one of its headings (GitHub's anchors). README.md stays a front door: at most 250 lines.

No database, no kernel: plain file reading. Links inside fenced code blocks and code spans are text, not links;
http(s):, mailto: (any URL scheme) and links to an anchor of the same page are not checked.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parent.parent
README_MAX_LINES = 250

# [text](target) and ![alt](target), the target optionally in <...> and followed by a "title"
INLINE = re.compile(r"!?\[(?P<text>[^\]]*)\]\(\s*(?P<target><[^>]*>|[^)\s]+)(?:\s+\"[^\"]*\")?\s*\)")
# [label]: target (a reference definition)
REFERENCE = re.compile(r"^ {0,3}\[(?P<text>[^\]]+)\]:\s*(?P<target><[^>]*>|\S+)")
FENCE = re.compile(r"^ {0,3}(?P<fence>`{3,}|~{3,})")
CODE_SPAN = re.compile(r"(?P<ticks>`+)(?!`).*?(?<!`)(?P=ticks)(?!`)")
SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
HEADING = re.compile(r"^ {0,3}#{1,6}[ \t]+(?P<title>.*?)(?:[ \t]+#+)?[ \t]*$")


def _documents() -> list[Path]:
    found = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    found += [p for p in (ROOT / "benchmarks" / "RESULTS.md", ROOT / "tests" / "corpora" / "README.md") if p.exists()]
    return [p for p in found if p.exists()]


def _prose_lines(text: str, *, blank_code_spans: bool = True) -> list[tuple[int, str]]:
    """(line number, line) of every line outside fenced code blocks; code spans blanked unless told."""
    lines: list[tuple[int, str]] = []
    fence = ""
    for number, line in enumerate(text.splitlines(), 1):
        opened = FENCE.match(line)
        if fence:
            if (
                opened
                and opened["fence"][0] == fence[0]
                and len(opened["fence"]) >= len(fence)
                and not line.strip().lstrip(fence[0])
            ):
                fence = ""
            continue
        if opened:
            fence = opened["fence"]
            continue
        lines.append((number, CODE_SPAN.sub(lambda m: " " * len(m[0]), line) if blank_code_spans else line))
    return lines


def _links(path: Path) -> list[tuple[int, str, str]]:
    """(line, the link as written, its target) of every link and image of a Markdown file."""
    found = []
    for number, line in _prose_lines(path.read_text(encoding="utf-8")):
        for pattern in (INLINE, REFERENCE):
            for m in pattern.finditer(line):
                found.append((number, m[0], m["target"].strip("<>")))
    return found


def slug(title: str) -> str:
    """A heading's anchor as GitHub makes it: the text without Markdown, lowercased, punctuation but hyphens
    and underscores dropped, each space a hyphen."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", title)  # a link or image: its text
    text = re.sub(r"<[^>]+>", "", text).replace("`", "").replace("*", "")
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading anchor of a Markdown file (a repeated heading gets -1, -2, ... as on GitHub)."""
    seen: dict[str, int] = {}
    found = set()
    for _, line in _prose_lines(path.read_text(encoding="utf-8"), blank_code_spans=False):
        heading = HEADING.match(line)
        if heading is None:
            continue
        base = slug(heading["title"])
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def broken_links(path: Path) -> list[str]:
    """One line per link of `path` whose file (or heading) does not exist."""
    problems = []
    for number, written, target in _links(path):
        if not target or target.startswith("#") or SCHEME.match(target):
            continue
        file_part, _, fragment = target.partition("#")
        file_part = unquote(file_part.split("?", 1)[0])
        base = ROOT if file_part.startswith("/") else path.parent
        resolved = (base / file_part.lstrip("/")).resolve()
        where = f"{path.relative_to(ROOT)}:{number}: {written}"
        shown = resolved.relative_to(ROOT) if resolved.is_relative_to(ROOT) else resolved
        if not resolved.exists():
            problems.append(f"{where}: no such file {shown}")
        elif fragment and resolved.suffix == ".md" and unquote(fragment).lower() not in anchors(resolved):
            problems.append(f"{where}: {shown} has no heading with the anchor #{fragment}")
    return problems


DOCUMENTS = _documents()


def test_documents_found() -> None:
    assert ROOT / "README.md" in DOCUMENTS and any(p.parent.name == "docs" for p in DOCUMENTS)


@pytest.mark.parametrize("path", DOCUMENTS, ids=[str(p.relative_to(ROOT)) for p in DOCUMENTS])
def test_relative_links_resolve(path: Path) -> None:
    problems = broken_links(path)
    assert not problems, "broken links:\n" + "\n".join(problems)


def test_readme_is_a_front_door() -> None:
    lines = len((ROOT / "README.md").read_text(encoding="utf-8").splitlines())
    assert lines <= README_MAX_LINES, (
        f"README.md has {lines} lines, more than {README_MAX_LINES}: move reference material into docs/ and link it"
    )


def test_the_checker_sees_what_it_should(tmp_path: Path) -> None:
    """Fenced code and code spans hold no links; slugs follow GitHub's rules."""
    page = tmp_path / "page.md"
    page.write_text(
        "a [real](x.md) link and `[not](y.md)`\n```md\n[fenced](z.md)\n```\n"
        '![img](pic.png "title") [web](https://example.org)\n\n[ref]: defined.md\n',
        encoding="utf-8",
    )
    assert [target for _, _, target in _links(page)] == ["x.md", "pic.png", "https://example.org", "defined.md"]
    page.write_text("# One `code` title\n```\n# not a heading\n```\n## One code title\n", encoding="utf-8")
    assert anchors(page) == {"one-code-title", "one-code-title-1"}
    assert slug("Where the ledger lives: `ledger_schema`") == "where-the-ledger-lives-ledger_schema"
    assert slug("A release: `runbook deploy`") == "a-release-runbook-deploy"
    assert slug("runbook.toml") == "runbooktoml"
    assert slug("Evidence, and Prisma's `_prisma_migrations`") == "evidence-and-prismas-_prisma_migrations"
