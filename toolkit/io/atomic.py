"""Atomic file writes (temp file in the target folder + rename) and JSON reading with clear errors.

An interrupted run must never leave a half-written file that a resumed run would take for a finished
one, so every output of the toolkit goes through these helpers.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from toolkit.errors import SegkitError


@contextlib.contextmanager
def atomic_write_path(path: str | Path, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    The temporary name keeps the final suffix (``.nii.gz``, ``.npy``...) because some writers pick
    the format from the file name.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix is None:
        suffix = "".join(path.suffixes[-2:]) if path.name.endswith(".gz") else path.suffix
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + suffix, dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def atomic_write_json(path: str | Path, data: Any, indent: int = 2) -> None:
    """Write ``data`` as pretty JSON, atomically."""
    with atomic_write_path(path, suffix=".json") as tmp:
        tmp.write_text(json.dumps(data, indent=indent, sort_keys=False) + "\n", encoding="utf-8")


def read_json(path: str | Path) -> Any:
    """Read a JSON file; a missing or malformed file is a one-line :class:`SegkitError`."""
    path = Path(path)
    if not path.is_file():
        raise SegkitError("file not found", path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise SegkitError(f"malformed JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})", path) from None
    except UnicodeDecodeError:
        raise SegkitError("not a UTF-8 text file", path) from None
