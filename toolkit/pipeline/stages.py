"""The resumable stages before training: fingerprint, plans, preprocessing, splits.

Each ``ensure_*`` function returns the stage's result and does the work only when its output is
missing or stale, so ``segkit run`` can be killed at any point and simply started again.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

from toolkit.dataset import DatasetSpec, discover_cases
from toolkit.errors import SegkitError
from toolkit.io.atomic import atomic_write_json, atomic_write_path, read_json
from toolkit.workdir import WorkDir


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def ensure_fingerprint(spec: DatasetSpec, wd: WorkDir, jobs: int) -> dict[str, Any]:
    """The fingerprint of the current training cases (recomputed if the case list changed)."""
    current = [c.id for c in discover_cases(spec, "Tr")]
    if wd.fingerprint.is_file():
        fp = read_json(wd.fingerprint)
        if fp.get("case_identifiers", current) == current:
            return fp
        log(f"{wd.fingerprint} was computed for other training cases: recomputing it")
    log(f"[fingerprint] no up-to-date fingerprint in {wd.root}: computing it first ({len(current)} cases)")
    return write_fingerprint(spec, wd, jobs)


def write_fingerprint(spec: DatasetSpec, wd: WorkDir, jobs: int) -> dict[str, Any]:
    """Compute the fingerprint; write it and the copy of dataset.json into the work dir."""
    from toolkit.fingerprint import compute_fingerprint

    fp = compute_fingerprint(spec, jobs=jobs)
    atomic_write_json(wd.fingerprint, fp)
    with atomic_write_path(wd.dataset_json) as tmp:
        shutil.copyfile(spec.root / "dataset.json", tmp)
    return fp


def ensure_plans(spec: DatasetSpec, wd: WorkDir, fingerprint: dict[str, Any], gpu_memory_gb: float | None,
                 preset: str | None = None) -> dict[str, Any]:
    """plans.json; an existing one is kept (users may edit it: hyperparameters are data).

    ``preset`` None plans with the default preset, or keeps whatever plans exist; a named preset that
    differs from the existing plans' (a plans.json without "preset" is the default's) is an error
    rather than a silent mix of two planners in one work directory.
    """
    from toolkit.planning import format_plans_table, load_preset, plan_experiment

    settings = load_preset(preset)
    if wd.plans.is_file():
        plans = read_json(wd.plans)
        existing = plans.get("preset", "default") if isinstance(plans, dict) else None
        if preset is not None and existing != settings.preset:
            raise SegkitError(f"was planned with preset {existing!r}, not {settings.preset!r}: remove it (and the "
                              "preprocessed data) or use another --work to plan with the new preset", wd.plans)
        return plans
    gb = settings.gpu_memory_gb if gpu_memory_gb is None else gpu_memory_gb
    log(f"[plan] preset {settings.preset}, GPU memory budget {gb:g} GB")
    plans, _ = plan_experiment(fingerprint, spec, gpu_memory_gb, settings)
    atomic_write_json(wd.plans, plans)
    log(format_plans_table(plans))
    return plans


def ensure_preprocessed(spec: DatasetSpec, wd: WorkDir, plans: dict[str, Any], configs: list[str], jobs: int) -> None:
    """Preprocess what ``configs`` need (finished cases are skipped); any failed case stops the run."""
    from toolkit.preprocessing.runner import preprocess_dataset

    log(f"[preprocess] {', '.join(configs)}")
    result = preprocess_dataset(spec.root, plans, configs, wd.root / "preprocessed", workers=jobs)
    if result["failed"]:
        first = result["failed"][0]
        raise SegkitError(f"{len(result['failed'])} case(s) failed to preprocess; first: case "
                          f"{first.job.case_id} ({first.job.config}): {first.error}", spec.root)


def ensure_splits(spec: DatasetSpec, wd: WorkDir, folds: int = 5, seed: int = 12345) -> list[dict[str, list[str]]]:
    """The dataset's splits_final.json, else the work dir's, else new patient-grouped splits."""
    from toolkit.dataset.splits import resolve_splits

    return resolve_splits(spec.root, [c.id for c in discover_cases(spec, "Tr")], wd.splits, folds, seed)


def planned_configs(plans: dict[str, Any]) -> list[str]:
    """Configurations in training order: a cascade's previous stage always comes first."""
    order = ["2d", "3d_fullres", "3d_lowres", "3d_cascade_fullres"]
    present = list(plans["configurations"])
    return [c for c in order if c in present] + [c for c in present if c not in order]


def reference_labels(spec: DatasetSpec) -> dict[str, Path]:
    return {c.id: c.label for c in discover_cases(spec, "Tr") if c.label is not None}
