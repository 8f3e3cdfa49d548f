"""``segkit export``: copy what inference needs out of a work directory into one folder.

::

    BUNDLE/manifest.json          format, versions, dataset, selected configurations and folds, SHA-256s
    BUNDLE/dataset.json
    BUNDLE/postprocessing.json    the decision chosen by cross-validation
    BUNDLE/selection.json         the full selection report (for the record; absent without a selection)
    BUNDLE/models/<config>/plans.json, dataset.json, fold_<k>/checkpoint_final.pt

A cascade's low-resolution stage is included with its full-resolution stage, because prediction runs it
first. By default the bundle holds the selection's winner; ``config``/``folds`` (``segkit export -c CONFIG
--folds ...``) name one configuration's folds explicitly instead, e.g. fold ``all``, which selection never
picks (it has no held-out cases). Such a bundle reuses the selection's postprocessing only when the
selection's winner is that same single configuration (the decision was made on its cross-validation);
otherwise it has none, and ``cv_score`` is null unless the folds are exactly the winner's.
The bundle is assembled in a temporary folder beside ``out`` and renamed at the end. Files are
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
from toolkit.dataset.folds import is_all, numbered, parse_folds
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


def _copy_model(work: WorkDir, config: str, folds: list[int | str], dst: Path) -> None:
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


def _sorted_folds(folds: Any) -> list[int | str]:
    """Numbered folds ascending, then fold all."""
    parsed = parse_folds(folds)
    return sorted(numbered(parsed)) + [f for f in parsed if is_all(f)]


def _choice(wd: WorkDir, selection: dict[str, Any] | None, config: str | None,
            folds: list[int | str] | None) -> tuple[list[str], dict[str, list[int | str]], dict[str, Any], Any]:
    """(configurations, folds per configuration, postprocessing decision, CV score) of the bundle."""
    if config is None:
        if folds:
            raise SegkitError("--folds needs -c CONFIG (the selection's winner brings its own folds)")
        if selection is None:
            raise SegkitError("no selection.json; run `segkit select` (or `segkit run`) first, or name the "
                              "model with -c CONFIG --folds ...", wd.selection)
        winner = selection["winner"]
        chosen = {c: _sorted_folds(ks) for c, ks in winner["folds"].items()}
        return winner["configurations"], chosen, selection["postprocessing"]["decision"], winner["score"]
    from toolkit.inference.model_folder import default_folds

    root = wd.root / "models" / config
    if not (root / "plans.json").is_file():
        raise SegkitError(f"configuration {config!r} has no trained model", root)
    chosen_folds = _sorted_folds(folds) if folds else default_folds(root)
    if not chosen_folds:
        raise SegkitError(f"no fold_<k>/{CHECKPOINT} found (is training finished?)", root)
    winner = (selection or {}).get("winner") or {}
    same = winner.get("configurations") == [config]
    decision = selection["postprocessing"]["decision"] if same else {}
    score = winner["score"] if same and _sorted_folds(winner["folds"][config]) == chosen_folds else None
    return [config], {config: chosen_folds}, decision, score


def make_bundle(dataset: str | Path, work: str | Path | None, out: str | Path, overwrite: bool = False,
                config: str | None = None, folds: list[int | str] | None = None) -> dict[str, Any]:
    """Build the bundle of the selected model (or of ``config``'s ``folds``); returns its manifest."""
    wd = WorkDir.for_dataset(work, dataset)
    selection = read_json(wd.selection) if wd.selection.is_file() else None
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise SegkitError("output folder exists and is not empty (use --overwrite)", out)
    chosen, folds_of, decision, score = _choice(wd, selection, config, folds)
    configs = _configs_with_stages(wd, chosen)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = create_temp_dir(out.parent, prefix=f".{out.name}.")
    try:
        for config in configs:
            dst = tmp / "models" / config
            dst.mkdir(parents=True)
            # a previous stage needs the same folds as the stage that consumes it
            stage_folds = folds_of.get(config) or _sorted_folds({k for ks in folds_of.values() for k in ks})
            _copy_model(wd, config, stage_folds, dst)
        shutil.copyfile(wd.dataset_json if wd.dataset_json.is_file() else Path(dataset) / "dataset.json",
                     tmp / "dataset.json")
        atomic_write_json(tmp / "postprocessing.json", decision)
        if selection is not None:
            shutil.copyfile(wd.selection, tmp / "selection.json")
        manifest = {
            "format": BUNDLE_FORMAT,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "dataset": wd.root.name,
            "configurations": chosen,
            "stages": configs,
            "folds": folds_of,
            "cv_score": score,
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
