"""Foreground intensity statistics per channel from per-case samples (docs/method.md 1.1).

nnU-Net v2 draws ``1e8 / n_cases`` foreground voxels per case *with replacement* and pools them, so
every case weighs the same whatever its foreground size. We keep that weighting without
materialising the replicas: a case with fewer foreground voxels than its quota contributes all of
them, each weighted ``quota / n_fg`` (the expectation of the resampling, so no sampling noise);
a larger case contributes ``quota`` seeded draws with weight 1.

Memory: each case's sample is sorted in its worker and never concatenated. Mean and std are
accumulated case by case in float64; percentiles are found by bisection on the weighted cumulative
count ``sum_c w_c * #(v_c <= t)`` (binary searches in the sorted per-case arrays). So the parent
holds at most the float32 samples themselves (<= 1e8 values per channel, as nnU-Net does) and no
pooled copy, weights array or sort index.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

STAT_KEYS = ("mean", "median", "std", "min", "max", "percentile_99_5", "percentile_00_5")


@dataclass(frozen=True)
class Sample:
    """Sorted foreground values of one channel of one case, each standing for ``weight`` draws."""

    values: np.ndarray  # float32, ascending
    weight: float


def sample_foreground(values: np.ndarray, quota: int, rng: np.random.Generator) -> Sample:
    """All values with weight quota/n when n <= quota, else ``quota`` draws with replacement."""
    n = int(values.size)
    if n == 0:
        return Sample(np.empty(0, dtype=np.float32), 0.0)
    if n <= quota:
        return Sample(np.sort(np.asarray(values, dtype=np.float32)), quota / n)
    return Sample(np.sort(rng.choice(values, quota, replace=True).astype(np.float32, copy=False)), 1.0)


def _count_at_most(samples: Sequence[Sample], t: np.float32) -> float:
    """Weighted number of draws <= t."""
    return float(sum(s.weight * np.searchsorted(s.values, t, side="right") for s in samples))


def _next_value_above(samples: Sequence[Sample], t: np.float32) -> np.float32:
    heads = [s.values[i] for s in samples if (i := int(np.searchsorted(s.values, t, side="right"))) < s.values.size]
    return np.float32(min(heads))


def weighted_quantile(samples: Sequence[Sample], q: float) -> float:
    """The q-th percentile of the pooled draws: the smallest value whose weighted count exceeds
    ``q/100 * (W - 1)`` (np.percentile's index on the replicated sample, without interpolation)."""
    total = sum(s.weight * s.values.size for s in samples)
    k = q / 100.0 * max(total - 1.0, 0.0)
    lo = np.float32(min(s.values[0] for s in samples))
    hi = np.float32(max(s.values[-1] for s in samples))
    if _count_at_most(samples, lo) > k:
        return float(lo)
    for _ in range(1000):  # invariant: count(lo) <= k < count(hi); float32 bisection ends in < 300 steps
        nxt = _next_value_above(samples, lo)
        if _count_at_most(samples, nxt) > k:
            return float(nxt)
        mid = np.float32((float(lo) + float(hi)) / 2)
        if mid <= lo or mid >= hi:
            return float(hi)
        if _count_at_most(samples, mid) > k:
            hi = mid
        else:
            lo = mid
    return float(hi)


def pooled_statistics(samples: Sequence[Sample]) -> dict[str, float | None]:
    """Weighted statistics of the pooled samples of one channel; all None if there is no foreground."""
    kept = [s for s in samples if s.values.size]
    if not kept:
        return dict.fromkeys(STAT_KEYS)
    total = sum(s.weight * s.values.size for s in kept)
    mean = sum(s.weight * float(s.values.sum(dtype=np.float64)) for s in kept) / total
    var = sum(s.weight * float(((s.values.astype(np.float64) - mean) ** 2).sum()) for s in kept) / total
    return {
        "mean": float(mean),
        "median": weighted_quantile(kept, 50.0),
        "std": float(np.sqrt(var)),
        "min": float(min(s.values[0] for s in kept)),
        "max": float(max(s.values[-1] for s in kept)),
        "percentile_99_5": weighted_quantile(kept, 99.5),
        "percentile_00_5": weighted_quantile(kept, 0.5),
    }
