"""``segkit export``: copy what inference needs out of a work directory into one folder.

::

    BUNDLE/manifest.json          format, versions, dataset, selected configurations and folds, SHA-256s
    BUNDLE/dataset.json
    BUNDLE/postprocessing.json    the decision chosen by cross-validation
    BUNDLE/selection.json         the full selection report (for the record)
    BUNDLE/models/<config>/plans.json, dataset.json, fold_<k>/checkpoint_final.pt

A cascade's low-resolution stage is included with its full-resolution stage, because prediction runs it
first. The bundle is assembled in a temporary folder beside ``out`` and renamed at the end. Files are
copied by content only (``copyfile``): the bundle's modes follow the umask like any other output
(0644/0755 under umask 022), never the work directory's, so a container's non-root user can read it.
"""

from __future__ import annotations

import datetime as _dt
import platform
import shutil
from pathlib import Path
from typing import Any

from toolkit import __version__
from toolkit.bundle.manifest import BUNDLE_FORMAT, BUNDLE_MANIFEST, hash_tree
from toolkit.errors import SegkitError
from toolkit.io.atomic import atomic_write_json, create_temp_dir, read_json
from toolkit.workdir import WorkDir

CHECKPOINT = "checkpoint_final.pt"


def _configs_with_stages(work: WorkDir, configs: list[str]) -> list[str]:
    """The selected configurations plus the previous stages they depend on."""
    out: list[str] = []
    for config in configs:
        plans = read_json(work.root / "models" / config / "plans.json")
        previous = plans["configurations"][config].get("previous_stage")
        for c in ([previous] if previous else []) + [config]:
            if c not in out:
                out.append(c)
    return out


def _copy_model(work: WorkDir, config: str, folds: list[int], dst: Path) -> None:
    src = work.root / "models" / config
    for name in ("plans.json", "dataset.json"):
        if not (src / name).is_file():
            raise SegkitError("model folder is incomplete", src / name)
        shutil.copyfile(src / name, dst / name)
    for k in folds:
        ckpt = src / f"fold_{k}" / CHECKPOINT
        if not ckpt.is_file():
            raise SegkitError("fold has no final checkpoint; finish its training first", ckpt)
        (dst / f"fold_{k}").mkdir(parents=True)
        shutil.copyfile(ckpt, dst / f"fold_{k}" / CHECKPOINT)


def _versions() -> dict[str, str]:
    import numpy
    import SimpleITK

    versions = {"segkit": __version__, "python": platform.python_version(), "numpy": numpy.__version__,
                "SimpleITK": SimpleITK.Version_VersionString()}
    try:
        import torch

        versions["torch"] = torch.__version__
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    return versions


def make_bundle(dataset: str | Path, work: str | Path | None, out: str | Path, overwrite: bool = False) -> dict[str, Any]:
    """Build the bundle of the selected model; returns its manifest."""
    wd = WorkDir.for_dataset(work, dataset)
    selection = read_json(wd.selection) if wd.selection.is_file() else None
    if selection is None:
        raise SegkitError("no selection.json; run `segkit select` (or `segkit run`) first", wd.selection)
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise SegkitError("output folder exists and is not empty (use --overwrite)", out)
    winner = selection["winner"]
    folds = {c: sorted(int(k) for k in ks) for c, ks in winner["folds"].items()}
    configs = _configs_with_stages(wd, winner["configurations"])
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = create_temp_dir(out.parent, prefix=f".{out.name}.")
    try:
        for config in configs:
            dst = tmp / "models" / config
            dst.mkdir(parents=True)
            # a previous stage needs the same folds as the stage that consumes it
            stage_folds = folds.get(config) or sorted({k for ks in folds.values() for k in ks})
            _copy_model(wd, config, stage_folds, dst)
        shutil.copyfile(wd.dataset_json if wd.dataset_json.is_file() else Path(dataset) / "dataset.json",
                     tmp / "dataset.json")
        atomic_write_json(tmp / "postprocessing.json", selection["postprocessing"]["decision"])
        shutil.copyfile(wd.selection, tmp / "selection.json")
        manifest = {
            "format": BUNDLE_FORMAT,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "dataset": wd.root.name,
            "configurations": winner["configurations"],
            "stages": configs,
            "folds": folds,
            "cv_score": winner["score"],
            "versions": _versions(),
            "files": hash_tree(tmp),
        }
        atomic_write_json(tmp / BUNDLE_MANIFEST, manifest)
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return manifest
