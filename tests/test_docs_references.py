"""The code's references to the documentation resolve, and the CLI reference lists the real CLI.

Docstrings and comments cite the method and the interfaces as ``docs/method.md 1.2``,
``docs/method.md 1.3 "Target spacing"`` or ``docs/interfaces.md "Model folder and checkpoints"``: a file
in docs/, then a section number, a quoted heading, or both (the heading must then lie inside that
section). Every such reference in toolkit/, challenges/, tests/ and bench/ must name an existing file
and heading, and any other mention of method.md, interfaces.md, contracts.md or "the contract" is a
reference a user cannot follow (it pointed at files outside the repository), so it fails too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import click
import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
SCANNED = ("toolkit", "challenges", "tests", "bench")
SECTIONED = ("method.md", "interfaces.md")  # files whose references must name a section

REFERENCE = re.compile(r'docs/(?P<file>[\w.-]+\.md)(?: (?P<number>\d+(?:\.\d+)*))?(?: "(?P<heading>[^"\n]+)")?')
BARE = re.compile(r"(?:method|interfaces|contracts?)\.md|\bcontracts?\b", re.IGNORECASE)
NUMBERED = re.compile(r"^(?P<number>\d+(?:\.\d+)*)\.?\s+(?P<title>.+)$")


@dataclass(frozen=True)
class Heading:
    level: int
    number: str | None
    title: str


@cache
def headings(name: str) -> tuple[Heading, ...]:
    """The markdown headings of ``docs/<name>`` in order (section number split off the title)."""
    out = []
    in_code = False
    for line in (DOCS / name).read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            in_code = not in_code
        if in_code or not line.startswith("#"):
            continue
        level = len(line) - len(line.lstrip("#"))
        text = line[level:].strip()
        m = NUMBERED.match(text)
        out.append(Heading(level, m["number"], m["title"]) if m else Heading(level, None, text))
    return tuple(out)


def _section_span(hs: tuple[Heading, ...], number: str) -> range | None:
    """Indices of the headings inside section ``number`` (itself included)."""
    for i, h in enumerate(hs):
        if h.number == number:
            end = next((j for j in range(i + 1, len(hs)) if hs[j].level <= h.level), len(hs))
            return range(i, end)
    return None


def resolve(file: str, number: str | None, heading: str | None) -> str | None:
    """None if the reference resolves, else what is wrong with it."""
    if not (DOCS / file).is_file():
        return f"docs/{file} does not exist"
    if file not in SECTIONED:
        return None
    if number is None and heading is None:
        return f'docs/{file} needs a section number or a quoted heading on the same line'
    hs = headings(file)
    span = range(len(hs))
    if number is not None:
        found = _section_span(hs, number)
        if found is None:
            return f"docs/{file} has no section {number}"
        span = found
    if heading is not None and not any(hs[i].title == heading or
                                       f"{hs[i].number} {hs[i].title}" == heading for i in span):
        where = f" inside section {number}" if number else ""
        return f'docs/{file} has no heading "{heading}"{where}'
    return None


def check_line(line: str) -> list[str]:
    """Problems of the documentation references on one line of code."""
    problems = []
    rest = line
    for m in REFERENCE.finditer(line):
        problem = resolve(m["file"], m["number"], m["heading"])
        if problem:
            problems.append(problem)
        rest = rest.replace(m.group(0), " ", 1)
    for m in BARE.finditer(rest):
        problems.append(f"{m.group(0)!r} is not a resolvable reference (write docs/method.md 1.2, "
                        f'docs/method.md 1.3 "Heading" or docs/interfaces.md "Heading")')
    return problems


def scanned_files() -> list[Path]:
    this = Path(__file__).resolve()
    return sorted(p for d in SCANNED for p in (ROOT / d).rglob("*.py")
                  if p.resolve() != this and ".peer-venv" not in p.parts)


def test_every_reference_to_the_docs_resolves():
    problems, count = [], 0
    for path in scanned_files():
        for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            count += len(REFERENCE.findall(line))
            problems += [f"{path.relative_to(ROOT)}:{lineno}: {p}" for p in check_line(line)]
    assert not problems, "\n".join(problems)
    assert count >= 40, f"only {count} references found: is the scan looking in the right place?"


@pytest.mark.parametrize("line, ok", [
    ('"""Topology (docs/method.md 1.3 "Topology").', True),
    ("see docs/method.md 2, the sliding window", True),
    ('docs/interfaces.md "Model folder and checkpoints"', True),
    ("docs/cluster.md", True),
    ("see method.md 1.2", False),                                # not under docs/
    ("/work/shared/interfaces.md", False),
    ("docs/method.md 9.9", False),                               # no such section
    ('docs/method.md 1.2 "Target spacing"', False),              # heading exists, but in 1.3
    ('docs/method.md 1.3 "No such heading"', False),
    ("docs/method.md", False),                                   # no section named
    ('docs/interfaces.md "Network"; the contract says so', False),
    ('checkpoint (contract "Model folder and checkpoints")', False),
    ("docs/nonexistent.md", False),
])
def test_the_checker_accepts_resolvable_and_rejects_bare_references(line, ok):
    assert (check_line(line) == []) is ok, check_line(line)


def _documented_options(text: str, heading: str) -> set[str]:
    """Option names in the first column of the option table under ``heading``."""
    start = text.index(heading + "\n") + len(heading)
    nxt = re.search(r"^#{1,3} ", text[start:], re.MULTILINE)
    section = text[start: start + nxt.start()] if nxt else text[start:]
    cells = re.findall(r"^\| `([^`]+)` \|", section, re.MULTILINE)
    return {opt for cell in cells for opt in re.findall(r"(?<![\w-])(--?[\w-]+)", cell)}


def test_the_cli_reference_lists_every_command_and_option():
    from toolkit.cli import COMMANDS, cli

    text = (DOCS / "interfaces.md").read_text(encoding="utf-8")
    ctx = click.Context(cli, info_name="segkit")
    missing = []
    for name in sorted(COMMANDS):
        heading = f"### segkit {name}"
        if heading + "\n" not in text:
            missing.append(heading)
            continue
        documented = _documented_options(text, heading)
        for param in cli.get_command(ctx, name).params:
            if isinstance(param, click.Option) and not param.hidden and "--help" not in param.opts:
                missing += [f"segkit {name} {opt}" for opt in param.opts if opt not in documented]
    assert not missing, "docs/interfaces.md lacks:\n" + "\n".join(missing)
