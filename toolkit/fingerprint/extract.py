"""The dataset fingerprint (docs/method.md 1.1), computed in parallel over the training cases.

One case per worker task (``-j`` workers, spawned so a parent that already imported torch is
safe), results gathered in case order, so the fingerprint does not depend on scheduling. The JSON
keeps nnU-Net v2's ``dataset_fingerprint.json`` keys (``spacings``, ``shapes_after_crop``,
``foreground_intensity_properties_per_channel``, ``median_relative_size_after_cropping``) and adds
per-case details (ids, shapes before crop, relative sizes, foreground voxel counts) and the
sampling settings.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import numpy as np

from toolkit.dataset import Case, DatasetSpec, discover_cases
from toolkit.errors import SegkitError
from toolkit.fingerprint.case import CaseFingerprint, analyze_case
from toolkit.fingerprint.intensity import pooled_statistics

TOTAL_FOREGROUND_SAMPLES = 100_000_000  # as nnU-Net v2 (10e7): at most ~1e8 voxels in total
DEFAULT_SEED = 1234
FINGERPRINT_VERSION = 1


def default_jobs() -> int:
    return max(1, min(8, os.cpu_count() or 1))


def _analyze_all(cases: Sequence[Case], quota: int, seed: int, jobs: int, progress: bool) -> list[CaseFingerprint]:
    from tqdm import tqdm

    bar = tqdm(total=len(cases), desc="fingerprint", unit="case", file=sys.stderr, disable=not progress)
    results: list[CaseFingerprint | None] = [None] * len(cases)
    try:
        if jobs <= 1:
            for i, case in enumerate(cases):
                results[i] = analyze_case(case, quota, seed, i)
                bar.update()
        else:
            ctx = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
                futures = {pool.submit(analyze_case, case, quota, seed, i): i for i, case in enumerate(cases)}
                for fut in as_completed(futures):
                    results[futures[fut]] = fut.result()
                    bar.update()
    finally:
        bar.close()
    return [r for r in results if r is not None]


def assemble(spec: DatasetSpec, per_case: Sequence[CaseFingerprint], quota: int, seed: int) -> dict[str, Any]:
    """Pool the per-case results into the fingerprint dict (pure)."""
    stats = {
        str(c): pooled_statistics([r.samples[c] for r in per_case]) for c in range(spec.num_channels)
    }
    return {
        "spacings": [r.spacing for r in per_case],
        "shapes_after_crop": [r.shape_after_crop for r in per_case],
        "foreground_intensity_properties_per_channel": stats,
        "median_relative_size_after_cropping": float(np.median([r.relative_size_after_crop for r in per_case])),
        "num_cases": len(per_case),
        "case_identifiers": [r.case_id for r in per_case],
        "shapes_before_crop": [r.shape_before_crop for r in per_case],
        "relative_sizes_after_crop": [r.relative_size_after_crop for r in per_case],
        "foreground_voxels": [r.foreground_voxels for r in per_case],
        "channel_names": dict(spec.channel_names),
        "labels": dict(spec.labels),
        "intensity_sampling": {"total": TOTAL_FOREGROUND_SAMPLES, "per_case": quota, "seed": seed},
        "segkit_fingerprint_version": FINGERPRINT_VERSION,
    }


def compute_fingerprint(
    spec: DatasetSpec,
    jobs: int = 1,
    seed: int = DEFAULT_SEED,
    total_samples: int = TOTAL_FOREGROUND_SAMPLES,
    progress: bool = True,
) -> dict[str, Any]:
    """Fingerprint of the training cases of ``spec`` (reads only; raw data is never modified)."""
    cases = discover_cases(spec, "Tr")
    if not cases:
        raise SegkitError("no training cases in imagesTr", Path(spec.root) / "imagesTr")
    quota = max(1, int(total_samples // len(cases)))
    per_case = _analyze_all(cases, quota, seed, max(1, min(jobs, len(cases))), progress)
    fp = assemble(spec, per_case, quota, seed)
    fp["intensity_sampling"]["total"] = int(total_samples)
    return fp
