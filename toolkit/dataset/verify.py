"""``segkit verify``: find every problem of a canonical dataset, one line per problem, naming the file.

Structure is checked first (dataset.json, file names, pairing of images and labels, groups.json),
then every case's content is read in parallel (one case per worker, so memory stays bounded):
readability, NaN/Inf, empty images, channel grids, label grid, label values and dimensionality.
Nothing is ever written.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from toolkit.dataset.labels import dataset_label_spec
from toolkit.dataset.layout import Case, DatasetSpec, discover_cases, load_dataset, scan_images
from toolkit.errors import SegkitError
from toolkit.io.atomic import read_json
from toolkit.io.images import Geometry, read_image
from toolkit.io.integrity import nifti_nonfinite_count

PROGRESS_MIN_CASES = 50


@dataclass
class VerifyReport:
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    spec: DatasetSpec | None = None
    n_cases: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        spec = self.spec
        assert spec is not None
        channels = ", ".join(spec.modalities)
        labels = " ".join(f"{k}={v}" for k, v in spec.labels.items())
        plural = "s" if spec.num_channels != 1 else ""
        return f"OK ({self.n_cases} cases, {spec.num_channels} channel{plural} ({channels}), labels {labels})"


@dataclass
class _CaseResult:
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    ndim: int | None = None


def _p(path: Path, message: str) -> str:
    return f"{path}: {message}"


def _check_duplicate_keys(path: Path) -> list[str]:
    """json.loads silently keeps the last of duplicated keys; report them instead."""
    dupes: list[str] = []

    def hook(pairs):
        counts = Counter(k for k, _ in pairs)
        dupes.extend(k for k, c in counts.items() if c > 1)
        return dict(pairs)

    try:
        json.loads(path.read_text(encoding="utf-8"), object_pairs_hook=hook)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return []
    return [_p(path, f"duplicate key {k!r} (duplicate case id?)") for k in sorted(set(dupes))]


def _check_files(spec: DatasetSpec, split: str, cases: list[Case]) -> list[str]:
    """File-name level problems of images<split>/ and labelsTr/."""
    problems = []
    folder = spec.root / f"images{split}"
    _, strays = scan_images(folder, spec.file_ending)
    for p in strays:
        if p.is_dir():
            problems.append(_p(p, "unexpected folder"))
        elif not p.name.endswith(spec.file_ending):
            problems.append(_p(p, f"bad file ending (dataset.json says {spec.file_ending})"))
        else:
            problems.append(_p(p, "name does not follow <case>_<XXXX>" + spec.file_ending))
    by_case, _ = scan_images(folder, spec.file_ending)
    for channels in by_case.values():
        for ch in sorted(set(channels) - set(range(spec.num_channels))):
            problems.append(_p(channels[ch], f"channel {ch:04d} is not declared in channel_names"))
    for case in cases:
        problems += [_p(img, "missing channel file") for img in case.images if not img.exists()]
        if case.label is not None and not case.label.exists():
            problems.append(_p(case.label, "image has no label file"))
    if split == "Tr" and "dataset" not in spec.raw:
        labels_dir = spec.root / "labelsTr"
        known = {c.id for c in cases}
        for p in sorted(labels_dir.iterdir()) if labels_dir.is_dir() else []:
            if p.name.startswith("."):
                continue
            if not p.name.endswith(spec.file_ending):
                problems.append(_p(p, f"bad file ending (dataset.json says {spec.file_ending})"))
            elif p.name[: -len(spec.file_ending)] not in known:
                problems.append(_p(p, "label without image"))
    return problems


def _check_label_model(spec: DatasetSpec) -> list[str]:
    """nnU-Net v2's rules for labels: ignore is the highest value, regions need ``regions_class_order``."""
    try:
        dataset_label_spec(spec.raw, spec.root / "dataset.json")
    except SegkitError as exc:
        return [str(exc)]
    return []


def _check_structure(spec: DatasetSpec, cases: list[Case]) -> list[str]:
    problems = _check_duplicate_keys(spec.root / "dataset.json") + _check_label_model(spec)
    problems += _check_files(spec, "Tr", cases)
    if (spec.root / "imagesTs").is_dir():
        test_cases = discover_cases(spec, "Ts", require_complete=False)
        problems += _check_files(spec, "Ts", test_cases)
        for case_id in sorted({c.id for c in cases} & {c.id for c in test_cases}):
            problems.append(_p(spec.root / "imagesTs", f"case id {case_id!r} is also a training case"))
    folded = Counter(c.id.lower() for c in cases)
    for case_id in sorted(c.id for c in cases if folded[c.id.lower()] > 1):
        problems.append(_p(spec.root / "imagesTr", f"duplicate case id {case_id!r} (differs only by letter case)"))
    labelled = sum(1 for c in cases if c.label is not None and c.label.exists())
    if labelled != spec.num_training:
        problems.append(_p(spec.root / "dataset.json",
                           f"numTraining is {spec.num_training} but {labelled} labelled training cases were found"))
    problems += _check_groups(spec.root, [c.id for c in cases])
    return problems


def _check_groups(root: Path, case_ids: list[str]) -> list[str]:
    path = root / "groups.json"
    if not path.exists():
        return []
    try:
        data = read_json(path)
    except SegkitError as exc:
        return [str(exc)]
    if not isinstance(data, dict):
        return [_p(path, "must map case ids to patient ids")]
    return [_p(path, f"names unknown case {c!r}") for c in sorted(set(data) - set(case_ids))]


def _check_image(path: Path) -> tuple[np.ndarray | None, Geometry | None, list[str]]:
    try:
        array, geometry = read_image(path)
    except SegkitError as exc:
        return None, None, [str(exc)]
    if array.size == 0:
        return None, None, [_p(path, f"empty image (shape {array.shape})")]
    return array, geometry, []


def _check_label(spec: DatasetSpec, case: Case, ref: tuple[np.ndarray, Geometry] | None, res: _CaseResult) -> None:
    label, geometry, problems = _check_image(case.label)
    res.problems += problems
    if label is None:
        return
    path = case.label
    if ref is not None:
        if label.shape != ref[0].shape:
            res.problems.append(_p(path, f"label grid {label.shape} differs from image grid {ref[0].shape}"))
        elif diff := geometry.differs_from(ref[1]):
            res.problems.append(_p(path, f"label grid differs from image grid: {diff}"))
    if np.issubdtype(label.dtype, np.floating):
        if not np.all(np.isfinite(label)) or not np.array_equal(label, np.round(label)):
            res.problems.append(_p(path, "non-integer label values"))
            return
        res.notes.append(_p(path, f"note: float label ({label.dtype}) holds integers; accepted"))
    values = set(np.unique(label).astype(np.int64).tolist())
    undeclared = sorted(values - set(spec.label_values))
    if undeclared:
        res.problems.append(_p(path, f"label values {undeclared} are not declared in dataset.json labels"))


def _check_case(spec: DatasetSpec, case: Case) -> _CaseResult:
    res = _CaseResult()
    ref: tuple[np.ndarray, Geometry] | None = None
    for ch, img in enumerate(case.images):
        if not img.exists():
            continue  # reported by the structure check
        array, geometry, problems = _check_image(img)
        res.problems += problems
        if array is None:
            continue
        n_bad = int(np.count_nonzero(~np.isfinite(array))) or nifti_nonfinite_count(img)
        if n_bad:
            res.problems.append(_p(img, f"contains {n_bad} NaN/Inf voxel(s)"))
        if ref is None:
            ref, res.ndim = (array, geometry), array.ndim
        elif array.shape != ref[0].shape:
            res.problems.append(_p(img, f"channel {ch:04d} size {array.shape} differs from channel 0 {ref[0].shape}"))
        elif diff := geometry.differs_from(ref[1]):
            res.problems.append(_p(img, f"channel {ch:04d} differs from channel 0: {diff}"))
    if case.label is not None and case.label.exists():
        _check_label(spec, case, ref, res)
    return res


def _run_cases(spec: DatasetSpec, cases: list[Case], workers: int, progress: bool) -> list[_CaseResult]:
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results: Iterable[_CaseResult] = pool.map(lambda c: _check_case(spec, c), cases)
        if progress and len(cases) >= PROGRESS_MIN_CASES:
            from tqdm import tqdm

            results = tqdm(results, total=len(cases), desc="verify", unit="case", leave=False)
        return list(results)


def check_dataset(root: str | Path, workers: int | None = None, progress: bool = False) -> VerifyReport:
    """Verify a canonical dataset; never raises for dataset problems, returns them all."""
    report = VerifyReport()
    try:
        spec = load_dataset(root)
        cases = discover_cases(spec, "Tr", require_complete=False)
    except SegkitError as exc:
        report.problems.append(str(exc))
        return report
    report.spec, report.n_cases = spec, len(cases)
    report.problems += _check_structure(spec, cases)
    workers = workers or min(4, os.cpu_count() or 1)
    results = _run_cases(spec, cases, workers, progress)
    dims = Counter(r.ndim for r in results if r.ndim is not None)
    majority = dims.most_common(1)[0][0] if dims else None
    for case, res in zip(cases, results, strict=True):
        report.problems += res.problems
        report.notes += res.notes
        if res.ndim is not None and res.ndim != majority:
            report.problems.append(_p(case.images[0], f"{res.ndim}D image in a {majority}D dataset"))
    if not cases:
        report.problems.append(_p(spec.root / "imagesTr", "no training cases found"))
    return report


def verify_dataset(root: str | Path, workers: int | None = None) -> list[str]:
    """Problem lines of a dataset (empty list = valid)."""
    return check_dataset(root, workers).problems
