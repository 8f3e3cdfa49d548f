"""Foreground intensity statistics per channel from per-case samples (method.md 1.1).

nnU-Net v2 draws ``1e8 / n_cases`` foreground voxels per case *with replacement* and pools them, so
every case weighs the same whatever its foreground size. We keep that weighting without
materialising the replicas: a case with fewer foreground voxels than its quota contributes all of
them, each weighted ``quota / n_fg`` (the expectation of the resampling, so no sampling noise);
a larger case contributes ``quota`` seeded draws with weight 1. Statistics are then weighted:
mean, population std, min, max, and percentiles read off the weighted cumulative distribution.
Memory per channel is bounded by ``min(n_fg, quota)`` values per case.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

STAT_KEYS = ("mean", "median", "std", "min", "max", "percentile_99_5", "percentile_00_5")


@dataclass(frozen=True)
class Sample:
    """Foreground values of one channel of one case, each standing for ``weight`` draws."""

    values: np.ndarray
    weight: float


def sample_foreground(values: np.ndarray, quota: int, rng: np.random.Generator) -> Sample:
    """All values with weight quota/n when n <= quota, else ``quota`` draws with replacement."""
    n = int(values.size)
    if n == 0:
        return Sample(np.empty(0, dtype=np.float32), 0.0)
    if n <= quota:
        return Sample(np.asarray(values, dtype=np.float32), quota / n)
    return Sample(rng.choice(values, quota, replace=True).astype(np.float32, copy=False), 1.0)


def weighted_percentiles(sorted_values: np.ndarray, cum_weights: np.ndarray, qs: Sequence[float]) -> list[float]:
    """Percentiles of a weighted sample (values sorted, ``cum_weights`` their cumulative weights).

    Equals ``np.percentile`` of the sample with every value replicated ``weight`` times, up to the
    interpolation between two neighbouring distinct values.
    """
    total = cum_weights[-1]
    out = []
    for q in qs:
        k = q / 100.0 * max(total - 1.0, 0.0)
        i = int(np.searchsorted(cum_weights, k, side="right"))
        out.append(float(sorted_values[min(i, len(sorted_values) - 1)]))
    return out


def pooled_statistics(samples: Sequence[Sample]) -> dict[str, float | None]:
    """Weighted statistics of the pooled samples of one channel; all None if there is no foreground."""
    kept = [s for s in samples if s.values.size]
    if not kept:
        return dict.fromkeys(STAT_KEYS)
    values = np.concatenate([s.values for s in kept]).astype(np.float64)
    weights = np.concatenate([np.full(s.values.size, s.weight) for s in kept])
    total = weights.sum()
    mean = float((values * weights).sum() / total)
    std = float(np.sqrt((weights * (values - mean) ** 2).sum() / total))
    order = np.argsort(values, kind="stable")
    sv, cw = values[order], np.cumsum(weights[order])
    p005, median, p995 = weighted_percentiles(sv, cw, (0.5, 50.0, 99.5))
    return {
        "mean": mean,
        "median": median,
        "std": std,
        "min": float(sv[0]),
        "max": float(sv[-1]),
        "percentile_99_5": p995,
        "percentile_00_5": p005,
    }
