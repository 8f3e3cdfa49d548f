"""The bundle manifest: what a bundle holds, with versions and a SHA-256 of every file.

Loading a bundle re-hashes every file and refuses one whose content changed, was added or went
missing: a container built from a bundle must run exactly the models that cross-validation chose.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from toolkit.errors import SegkitError
from toolkit.io.atomic import read_json

BUNDLE_MANIFEST = "manifest.json"
BUNDLE_FORMAT = 1
_CHUNK = 1 << 20


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def hash_tree(root: Path) -> dict[str, str]:
    """SHA-256 of every file below ``root`` except the manifest, keyed by POSIX relative path."""
    return {
        p.relative_to(root).as_posix(): sha256_of(p)
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != BUNDLE_MANIFEST
    }


def is_bundle(folder: str | Path) -> bool:
    return (Path(folder) / BUNDLE_MANIFEST).is_file()


def verify_bundle(folder: str | Path) -> dict[str, Any]:
    """Check every file against the manifest; return the manifest. Raises on any mismatch."""
    root = Path(folder)
    manifest = read_json(root / BUNDLE_MANIFEST)
    if not isinstance(manifest, dict) or manifest.get("format") != BUNDLE_FORMAT or "files" not in manifest:
        raise SegkitError(f"not a segkit bundle manifest (format {BUNDLE_FORMAT})", root / BUNDLE_MANIFEST)
    expected: dict[str, str] = manifest["files"]
    actual = hash_tree(root)
    for rel in sorted(set(expected) | set(actual)):
        if rel not in actual:
            raise SegkitError("file listed in the manifest is missing; the bundle is incomplete", root / rel)
        if rel not in expected:
            raise SegkitError("file is not listed in the manifest; refusing a modified bundle", root / rel)
        if actual[rel] != expected[rel]:
            raise SegkitError("checksum mismatch; refusing a tampered or corrupted bundle", root / rel)
    return manifest
