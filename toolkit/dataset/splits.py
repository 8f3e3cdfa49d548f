"""Deterministic, patient-grouped k-fold splits in nnU-Net's ``splits_final.json`` format.

Two regimes, both deterministic from the seed:
- every case is its own group (no ``groups.json``, or all singletons): exactly nnU-Net v2's split
  (scikit-learn ``KFold(shuffle=True, random_state=seed)`` over the sorted case ids), so a dataset
  moved between nnU-Net and segkit gets the same folds;
- otherwise whole groups are assigned to folds: groups are shuffled with the seed, then taken
  largest first and each placed into the fold with the fewest cases so far (ties: lowest fold index).
  This keeps folds balanced by case count as well as the grouping allows, and a patient never
  straddles two folds.
An existing ``splits_final.json`` in the dataset folder always wins; then the work directory's one
(folds already trained on must not move); only then are new folds made (:func:`resolve_splits`).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from toolkit.errors import SegkitError
from toolkit.io.atomic import atomic_write_json, read_json

Split = dict[str, list[str]]


def _kfold_like_nnunet(case_ids: list[str], folds: int, seed: int) -> list[Split]:
    keys = sorted(case_ids)
    order = np.arange(len(keys))
    np.random.RandomState(seed).shuffle(order)
    sizes = np.full(folds, len(keys) // folds)
    sizes[: len(keys) % folds] += 1
    splits, start = [], 0
    for size in sizes:
        val_idx = set(order[start : start + size].tolist())
        start += size
        splits.append({
            "train": [k for i, k in enumerate(keys) if i not in val_idx],
            "val": [k for i, k in enumerate(keys) if i in val_idx],
        })
    return splits


def _grouped(case_ids: list[str], groups: dict[str, str], folds: int, seed: int) -> list[Split]:
    members: dict[str, list[str]] = defaultdict(list)
    for case in sorted(case_ids):
        members[groups.get(case, case)].append(case)
    names = sorted(members)
    rng = np.random.RandomState(seed)
    shuffled = [names[i] for i in rng.permutation(len(names))]
    # stable sort keeps the seeded order among groups of equal size
    shuffled.sort(key=lambda g: -len(members[g]))
    fold_cases: list[list[str]] = [[] for _ in range(folds)]
    for group in shuffled:
        target = min(range(folds), key=lambda f: (len(fold_cases[f]), f))
        fold_cases[target].extend(members[group])
    all_cases = sorted(case_ids)
    return [
        {"train": [c for c in all_cases if c not in set(val)], "val": sorted(val)} for val in fold_cases
    ]


def make_splits(case_ids: list[str], groups: dict[str, str] | None = None, folds: int = 5,
                seed: int = 12345) -> list[Split]:
    """k-fold splits that never separate the cases of one group (patient)."""
    if folds < 2:
        raise SegkitError(f"--folds must be at least 2 (got {folds}); to train on all data use fold 'all' "
                          "(`segkit run DATASET -f all`)")
    groups = groups or {}
    n_groups = len({groups.get(c, c) for c in case_ids})
    if n_groups < folds:
        raise SegkitError(
            f"only {n_groups} patient group(s) for {folds} folds; use --folds {max(2, n_groups)} "
            "or train on all data (fold 'all': `segkit run DATASET -f all`)" if n_groups >= 2 else
            f"only {n_groups} patient group(s): cross-validation is impossible; train on all data "
            "(fold 'all': `segkit run DATASET -f all`)"
        )
    if n_groups == len(case_ids):  # every case alone: nnU-Net's own split
        return _kfold_like_nnunet(case_ids, folds, seed)
    return _grouped(case_ids, groups, folds, seed)


def validate_splits(splits: object, case_ids: list[str], path: Path, unknown: str = "unknown") -> list[Split]:
    """Check a user-provided splits file: a list of {train, val} naming only known cases.

    ``unknown`` names what an unlisted case is in the error (the trainer says "unpreprocessed").
    """
    if not isinstance(splits, list) or not splits:
        raise SegkitError("must be a non-empty list of {\"train\": [...], \"val\": [...]}", path)
    known = set(case_ids)
    for i, s in enumerate(splits):
        if not isinstance(s, dict) or not isinstance(s.get("train"), list) or not isinstance(s.get("val"), list):
            raise SegkitError(f"fold {i} must have 'train' and 'val' lists", path)
        missing = sorted((set(s["train"]) | set(s["val"])) - known)
        if missing:
            raise SegkitError(f"fold {i} names {unknown} case(s): {', '.join(missing[:5])}", path)
    return splits  # type: ignore[return-value]


def load_or_make_splits(dataset_root: str | Path, case_ids: list[str], groups: dict[str, str] | None,
                        out_path: str | Path | None = None, folds: int = 5, seed: int = 12345,
                        unknown: str = "unknown") -> list[Split]:
    """The dataset's own ``splits_final.json`` if present, else :func:`make_splits`; optionally saved."""
    own = Path(dataset_root) / "splits_final.json"
    if own.exists():
        splits = validate_splits(read_json(own), case_ids, own, unknown)
    else:
        splits = make_splits(case_ids, groups, folds, seed)
    if out_path is not None:
        atomic_write_json(out_path, splits)
    return splits


def resolve_splits(dataset_root: str | Path, case_ids: list[str], work_splits: str | Path, folds: int = 5,
                   seed: int = 12345, unknown: str = "unknown") -> list[Split]:
    """The folds every command trains and validates on (``train``, ``run``, the demo: one rule).

    The dataset's ``splits_final.json`` (nnU-Net's convention), else the work directory's existing
    one (validated), else new patient-grouped folds from ``groups.json``, saved to ``work_splits``.
    """
    from toolkit.dataset.layout import load_groups

    own, work_splits = Path(dataset_root) / "splits_final.json", Path(work_splits)
    if not own.exists() and work_splits.is_file():
        return validate_splits(read_json(work_splits), case_ids, work_splits, unknown)
    groups = load_groups(dataset_root, case_ids)
    return load_or_make_splits(dataset_root, case_ids, groups, work_splits, folds, seed, unknown)
