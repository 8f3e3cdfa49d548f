"""Cascade trigger and the low-resolution spacing search (docs/method.md 1.3 "3D cascade").

A low-res spacing is searched whenever the full-res patch covers less than 25% of the median image.
Starting from the full-res target spacing, the spacing grows by 3% per step as in nnU-Net v2 (only the finer axes
while some axis is more than 2x finer than the coarsest), re-planning patch and topology each step,
until the low-res patch covers at least 25% of the median image at that spacing. The low-res stage
(and with it the cascade) is kept only if its median image has at most half the voxels of the
full-res one; together this is equivalent to "cascade only when the full-res patch covers < 12.5%".
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from toolkit.planning.configuration import ConfigPlan, plan_configuration
from toolkit.planning.settings import DEFAULT_SETTINGS, PlannerSettings


def _fmt(values: Sequence[float], digits: int = 4) -> str:
    return "x".join(f"{v:.{digits}g}" for v in values)


def next_lowres_spacing(spacing: np.ndarray, step: float) -> np.ndarray:
    """One search step: grow the axes more than 2x finer than the coarsest, or all axes if none is."""
    coarsest = spacing.max()
    finer = coarsest / spacing > 2
    return np.where(finer, spacing * step, spacing) if finer.any() else spacing * step


def plan_lowres(
    fullres: ConfigPlan,
    num_training: int,
    in_channels: int,
    num_classes: int,
    gpu_memory_gb: float = 8.0,
    settings: PlannerSettings = DEFAULT_SETTINGS,
    trace: list[str] | None = None,
) -> ConfigPlan | None:
    """The 3d_lowres plan, or None when the cascade is not triggered (or not worth it)."""
    notes = trace if trace is not None else []
    median = np.asarray(fullres.median_shape, dtype=np.float64)
    full_voxels = float(np.prod(median))
    coverage = float(np.prod(fullres.patch_size, dtype=np.float64)) / full_voxels
    thr = settings.lowres_creation_threshold
    if coverage >= thr:
        notes.append(f"cascade: fullres patch covers {coverage:.1%} >= {thr:.0%} of the median image -> no low-res search")
        return None
    notes.append(f"cascade: fullres patch covers {coverage:.1%} < {thr:.0%} -> search a low-res spacing")
    base = np.asarray(fullres.spacing, dtype=np.float64)
    spacing, plan, low_voxels, steps = base.copy(), None, full_voxels, 0
    while coverage < thr and steps < settings.lowres_max_steps:
        spacing = next_lowres_spacing(spacing, settings.lowres_spacing_step)
        steps += 1
        scaled = base / spacing * median
        low_voxels = float(np.prod(scaled))
        plan = plan_configuration(
            spacing, [round(float(v)) for v in scaled], low_voxels * num_training, in_channels, num_classes,
            gpu_memory_gb, settings, trace=None,
        )
        coverage = float(np.prod(plan.patch_size, dtype=np.float64)) / low_voxels
    if plan is None:
        return None
    ratio = full_voxels / low_voxels
    notes.append(
        f"cascade: after {steps} steps of {settings.lowres_spacing_step - 1:.0%} the low-res spacing "
        f"{_fmt(plan.spacing)} mm gives median {_fmt(plan.median_shape)}, patch {_fmt(plan.patch_size)} covers "
        f"{coverage:.1%}; fullres/lowres voxels = {ratio:.2f}"
    )
    if ratio < settings.lowres_min_size_ratio:
        notes.append(f"cascade: dropped, low-res image is not {settings.lowres_min_size_ratio:g}x smaller "
                     f"(fullres patch covers >= {thr / settings.lowres_min_size_ratio:.1%})")
        return None
    # re-plan the accepted spacing once more with the trace on, so --explain shows its patch rules
    notes.append("3d_lowres:")
    return plan_configuration(plan.spacing, plan.median_shape, low_voxels * num_training, in_channels,
                              num_classes, gpu_memory_gb, settings, trace=notes)
