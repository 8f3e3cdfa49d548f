"""Outputs get the mode a plain ``open(path, "w")`` / ``mkdir`` would give (0666/0777 & ~umask), not 0600.

Colleagues in a shared lab folder and a container's non-root user must be able to read plans, splits,
checkpoints and bundles; ``tempfile.mkstemp``/``mkdtemp`` used to make every output 0600/0700.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from bundle_helpers import make_tiny_bundle
from click.testing import CliRunner

from toolkit.bundle import make_bundle
from toolkit.cli import cli
from toolkit.io import Geometry, atomic_write_json, atomic_write_path, write_image

UMASKS = [0o022, 0o077]


@contextlib.contextmanager
def umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _modes_below(root: Path) -> dict[str, int]:
    return {p.relative_to(root).as_posix(): _mode(p) for p in [root, *root.rglob("*")] if not p.is_symlink()}


def _assert_tree_modes(root: Path, mask: int) -> None:
    files = 0o666 & ~mask
    dirs = 0o777 & ~mask
    wrong = {name: oct(m) for name, m in _modes_below(root).items()
             if m != (dirs if (root / name).is_dir() else files)}
    assert not wrong, f"expected files {oct(files)}, folders {oct(dirs)} below {root}: {wrong}"


@pytest.mark.parametrize("mask", UMASKS)
def test_atomic_writes_follow_the_umask(tmp_path, mask):
    with umask(mask):
        atomic_write_json(tmp_path / "a" / "plans.json", {"x": 1})
        with atomic_write_path(tmp_path / "a" / "data.npy") as tmp:
            np.save(tmp, np.arange(3))
        write_image(np.zeros((2, 3, 4), np.uint8), Geometry((1.0, 1.0, 1.0), (0.0, 0.0, 0.0),
                                                            (1, 0, 0, 0, 1, 0, 0, 0, 1)),
                    tmp_path / "a" / "seg.nii.gz")
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["data.npy", "plans.json", "seg.nii.gz"]
    for name in ("plans.json", "data.npy", "seg.nii.gz"):
        assert _mode(tmp_path / "a" / name) == 0o666 & ~mask, name
    assert json.loads((tmp_path / "a" / "plans.json").read_text(encoding="utf-8")) == {"x": 1}


@pytest.mark.parametrize("mask", UMASKS)
def test_split_command_output_follows_the_umask(phantom_dataset, tmp_path, mask):
    out = tmp_path / "splits_final.json"
    with umask(mask):
        result = CliRunner().invoke(cli, ["split", str(phantom_dataset), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert _mode(out) == 0o666 & ~mask


@pytest.mark.parametrize("mask", UMASKS)
def test_fingerprint_plan_and_bundle_export_follow_the_umask(phantom_dataset, tmp_path, mask):
    """`segkit fingerprint` + `segkit plan` (work dir) and the exported bundle, folders included."""
    with umask(mask):
        bundle = make_tiny_bundle(phantom_dataset, tmp_path)
    work = tmp_path / "work"
    assert (bundle / "manifest.json").is_file() and any(work.rglob("plans.json"))
    _assert_tree_modes(bundle, mask)
    _assert_tree_modes(work, mask)
    # a work dir written by an older segkit (0600 files): the bundle's modes still follow the umask
    for p in work.rglob("*"):
        if p.is_file():
            p.chmod(0o600)
    with umask(mask):
        make_bundle(phantom_dataset, work, tmp_path / "again")
    _assert_tree_modes(tmp_path / "again", mask)
