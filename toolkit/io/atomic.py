"""Atomic file writes (temp file in the target folder + rename) and JSON reading with clear errors.

An interrupted run must never leave a half-written file that a resumed run would take for a finished
one, so every output of the toolkit goes through these helpers.

Permissions: outputs get the mode a plain ``open(path, "w")`` (files, ``0o666 & ~umask``) or
``mkdir`` (folders, ``0o777 & ~umask``) would give, so that colleagues sharing a lab folder and a
container's non-root user can read them. ``tempfile.mkstemp``/``mkdtemp`` would make them 0600/0700
whatever the umask. The temporary entries are therefore created with ``os.open(..., O_CREAT | O_EXCL,
0o666)`` / ``os.mkdir(..., 0o777)`` under a random name: the kernel applies the umask itself, so the
process-global umask is never read or changed (``os.umask(0)`` + restore would race with other threads).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from toolkit.errors import SegkitError

_ATTEMPTS = 100


def _temp_name(parent: Path, prefix: str, suffix: str) -> Path:
    return parent / f"{prefix}{secrets.token_hex(6)}{suffix}"


def create_temp_file(parent: Path, prefix: str = ".", suffix: str = ".tmp") -> Path:
    """Create a new empty file in ``parent`` with a random name and the mode ``open()`` would give."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    for _ in range(_ATTEMPTS):
        tmp = _temp_name(parent, prefix, suffix)
        try:
            os.close(os.open(tmp, flags, 0o666))
        except FileExistsError:
            continue
        return tmp
    raise FileExistsError(f"no free temporary name in {parent}")


def create_temp_dir(parent: Path, prefix: str = ".", suffix: str = ".tmp") -> Path:
    """Create a new empty folder in ``parent`` with a random name and the mode ``mkdir`` would give."""
    for _ in range(_ATTEMPTS):
        tmp = _temp_name(parent, prefix, suffix)
        try:
            os.mkdir(tmp, 0o777)
        except FileExistsError:
            continue
        return tmp
    raise FileExistsError(f"no free temporary name in {parent}")


@contextlib.contextmanager
def atomic_write_path(path: str | Path, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    The temporary name keeps the final suffix (``.nii.gz``, ``.npy``...) because some writers pick
    the format from the file name. The file gets the umask's mode (see the module docstring).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix is None:
        suffix = "".join(path.suffixes[-2:]) if path.name.endswith(".gz") else path.suffix
    tmp_path = create_temp_file(path.parent, prefix=f".{path.name}.", suffix=".tmp" + suffix)
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
