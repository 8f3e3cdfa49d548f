"""Normalisation scheme per channel (docs/method.md 1.3 "Normalisation").

A channel named CT (case-insensitive) uses the dataset-wide foreground statistics (clip to the
0.5/99.5 percentiles, subtract the mean, divide by the std); every other channel is z-scored per
image. When cropping to the non-zero region shrank the median case by 25% or more, the background
is mostly padding: z-score then uses only the voxels inside the non-zero mask and leaves the
outside at 0. CT never uses the mask (its statistics are global). ``use_mask_for_norm: true`` in
dataset.json forces the mask rule, as in nnU-Net v2.
"""

from __future__ import annotations

from collections.abc import Mapping

from toolkit.planning.settings import DEFAULT_SETTINGS, PlannerSettings


def normalization_schemes(
    channel_names: Mapping[str, str],
    median_relative_size_after_cropping: float,
    force_mask: bool = False,
    settings: PlannerSettings = DEFAULT_SETTINGS,
    trace: list[str] | None = None,
) -> tuple[list[str], list[bool]]:
    """Return (scheme per channel: "ct" | "zscore", use_mask_for_norm per channel)."""
    notes = trace if trace is not None else []
    names = [channel_names[str(i)] for i in range(len(channel_names))]
    schemes = ["ct" if n.strip().lower() == "ct" else "zscore" for n in names]
    thr = settings.mask_for_norm_relative_size
    use_mask_rule = median_relative_size_after_cropping < thr or force_mask
    masks = [use_mask_rule and s == "zscore" for s in schemes]
    for i, (n, s, m) in enumerate(zip(names, schemes, masks, strict=True)):
        if s == "ct":
            notes.append(f"channel {i} ({n}): CT -> clip to foreground 0.5/99.5 percentiles, global mean/std")
        else:
            notes.append(f"channel {i} ({n}): not CT -> per-image z-score" + (" inside the non-zero mask" if m else ""))
    why = "dataset.json sets use_mask_for_norm" if force_mask else (
        f"median relative size after cropping {median_relative_size_after_cropping:.3f} "
        f"{'<' if use_mask_rule else '>='} {thr:g}")
    notes.append(f"non-zero mask for z-score: {'yes' if use_mask_rule else 'no'} ({why})")
    return schemes, masks
