"""Target spacing and the median image shape at a spacing (docs/method.md 1.3 "Target spacing").

The target is the per-axis median of the case spacings. On anisotropic datasets (the coarsest axis
is more than ``anisotropy_threshold`` x coarser than every other axis AND has fewer than
1/``anisotropy_threshold`` of the voxels of the smallest other axis) the median would throw away
the resolution of the better-sampled cases, so that axis takes the 10th percentile instead, but
never finer than the coarsest other axis.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from toolkit.planning.settings import DEFAULT_SETTINGS, PlannerSettings


def axis_name(axis: int, ndim: int) -> str:
    """"z", "y", "x" (3D) or "y", "x" (2D) for the rule trace."""
    return "zyx"[3 - ndim + axis] if ndim <= 3 else f"axis {axis}"


def _fmt(values: Sequence[float]) -> str:
    return " x ".join(f"{float(v):.4g}" for v in values)


def target_spacing(
    spacings: Sequence[Sequence[float]],
    shapes: Sequence[Sequence[int]],
    settings: PlannerSettings = DEFAULT_SETTINGS,
    trace: list[str] | None = None,
) -> list[float]:
    """Full-resolution target spacing from per-case spacings and shapes after cropping.

    ``trace`` (optional) collects one line per rule that fired, for ``--explain``.
    """
    sp = np.asarray(spacings, dtype=np.float64)
    median = np.percentile(sp, 50, axis=0)
    median_size = np.percentile(np.asarray(shapes, dtype=np.float64), 50, axis=0)
    target = median.copy()
    notes = trace if trace is not None else []
    notes.append(f"spacing: per-axis median of {len(sp)} cases = {_fmt(median)} mm")
    worst = int(np.argmax(median))
    others = [i for i in range(len(median)) if i != worst]
    if not others:
        return [float(t) for t in target]
    max_other = max(median[i] for i in others)
    min_other_size = min(median_size[i] for i in others)
    thr = settings.anisotropy_threshold
    aniso_spacing = median[worst] > thr * max_other
    aniso_voxels = median_size[worst] * thr < min_other_size
    if aniso_spacing and aniso_voxels:
        pct = float(np.percentile(sp[:, worst], settings.anisotropic_percentile))
        chosen = pct
        if pct < max_other:
            chosen = max(max_other, pct) + 1e-5
        target[worst] = chosen
        notes.append(
            f"{axis_name(worst, len(median))} is anisotropic: median {median[worst]:.4g} mm > {thr:g} x {max_other:.4g} mm and "
            f"median size {median_size[worst]:.4g} x {thr:g} < {min_other_size:.4g} -> target = "
            f"{settings.anisotropic_percentile:g}th percentile = {pct:.4g} mm"
            + (f", raised to {chosen:.4g} mm (not finer than the other axes)" if chosen != pct else "")
        )
    elif aniso_spacing:
        notes.append(
            f"{axis_name(worst, len(median))} spacing is anisotropic ({median[worst]:.4g} > {thr:g} x {max_other:.4g} mm) but it has "
            f"enough voxels ({median_size[worst]:.4g} x {thr:g} >= {min_other_size:.4g}) -> keep the median"
        )
    return [float(t) for t in target]


def resampled_shape(shape: Sequence[int], spacing: Sequence[float], new_spacing: Sequence[float]) -> list[int]:
    """Shape of an image after resampling from ``spacing`` to ``new_spacing`` (rounded per axis)."""
    return [int(round(s * sp / nsp)) for s, sp, nsp in zip(shape, spacing, new_spacing, strict=True)]


def median_shape_at(
    spacings: Sequence[Sequence[float]], shapes: Sequence[Sequence[int]], new_spacing: Sequence[float]
) -> list[float]:
    """Per-axis median of the case shapes after resampling each case to ``new_spacing``."""
    new = [resampled_shape(sh, sp, new_spacing) for sp, sh in zip(spacings, shapes, strict=True)]
    return [float(v) for v in np.median(np.asarray(new, dtype=np.float64), axis=0)]
