"""Small HTML helpers shared by the report's sections (escaping, numbers, tables)."""

from __future__ import annotations

import html
from typing import Any


def esc(value: Any) -> str:
    """HTML-escaped ``str(value)``."""
    return html.escape(str(value))


def num(value: float | None, digits: int = 4) -> str:
    """A number with ``digits`` decimals, or ``-`` for a missing value (e.g. an empty-both class)."""
    return "-" if value is None else f"{value:.{digits}f}"


def table(header: list[str], rows: list[list[str]], highlight: int | None = None, cls: str = "") -> str:
    """A table of already-escaped cells; row ``highlight`` (0-based) is marked as the selected one."""
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join(
        f"<tr{' class=sel' if i == highlight else ''}>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>"
        for i, row in enumerate(rows)
    )
    attr = f" class={cls}" if cls else ""
    return f"<table{attr}><tr>{head}</tr>{body}</table>"
