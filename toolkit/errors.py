"""User-facing errors.

Every problem caused by the user's input (a missing file, a malformed JSON, a wrong option) is raised
as :class:`SegkitError`; the CLI prints it as one line on stderr and exits with code 2. Anything else
is a bug and exits with code 1.
"""

from __future__ import annotations

from pathlib import Path


class SegkitError(Exception):
    """A problem with the user's input, reported as ``<path>: <problem>`` without a traceback."""

    def __init__(self, message: str, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self.message = message
        super().__init__(f"{path}: {message}" if path is not None else message)
