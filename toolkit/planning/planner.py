"""From a dataset fingerprint to plans.json: every inferred parameter of docs/method.md 1.3.

:func:`plan_experiment` is a pure function of the fingerprint, the dataset description and the GPU
memory budget. It returns the plans and the rule trace (``--explain``): the rules append one line
each to a list instead of printing, so the trace is data the CLI decides what to do with.

Axes: as nnU-Net v2, ``transpose_forward`` puts the coarsest axis of the target spacing first and
every configuration is planned on the transposed spacing and median shape (the patch-shrink rule's
tie-breaking depends on the axis order), so 2d works on the two finest axes. plans.json stores the
per-axis lists back in the input's (z, y, x) order (:mod:`toolkit.planning.axes`).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import numpy as np

from toolkit.dataset import DatasetSpec
from toolkit.errors import SegkitError
from toolkit.planning.axes import entry_to_input, nnunet_transpose
from toolkit.planning.cascade import plan_lowres
from toolkit.planning.configuration import ConfigPlan, plan_configuration
from toolkit.planning.normalization import normalization_schemes
from toolkit.planning.presets import preset_rules
from toolkit.planning.settings import DEFAULT_SETTINGS, PlannerSettings
from toolkit.planning.spacing import median_shape_at, target_spacing

FINGERPRINT_KEYS = ("spacings", "shapes_after_crop", "foreground_intensity_properties_per_channel",
                    "median_relative_size_after_cropping")


def check_fingerprint(fp: Any, where: Any = None) -> None:
    """Raise :class:`SegkitError` unless ``fp`` has what planning needs, consistently."""
    if not isinstance(fp, Mapping):
        raise SegkitError("fingerprint must be a JSON object", where)
    missing = [k for k in FINGERPRINT_KEYS if k not in fp]
    if missing:
        raise SegkitError(f"fingerprint lacks key(s): {', '.join(missing)}", where)
    sp, sh = fp["spacings"], fp["shapes_after_crop"]
    if not isinstance(sp, list) or not isinstance(sh, list) or not sp or len(sp) != len(sh):
        raise SegkitError("spacings and shapes_after_crop must be non-empty lists of equal length", where)
    ndims = {len(s) for s in sp} | {len(s) for s in sh}
    if len(ndims) != 1 or ndims.pop() not in (2, 3):
        raise SegkitError("every spacing and shape must have the same number (2 or 3) of axes", where)
    try:
        ok = all(float(v) > 0 for s in sp for v in s) and all(int(v) > 0 for s in sh for v in s)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise SegkitError("spacings and shapes must be positive numbers", where)


def _check_ct_statistics(schemes: list[str], stats: Any) -> None:
    """CT normalisation needs the dataset's foreground statistics; fail at planning, not preprocessing."""
    for c, scheme in enumerate(schemes):
        entry = stats.get(str(c)) if isinstance(stats, Mapping) else None
        needed = ("mean", "std", "percentile_00_5", "percentile_99_5")
        if scheme == "ct" and (not isinstance(entry, Mapping) or any(entry.get(k) is None for k in needed)):
            raise SegkitError(f"channel {c} is CT but the fingerprint has no foreground statistics for it "
                              "(no labelled foreground voxels?)")


def _as_3d(values: list[list[float]], fill: float) -> list[list[float]]:
    """2D fingerprints become 3D with one slice (nnU-Net's convention: z size 1, spacing 999)."""
    return [list(v) if len(v) == 3 else [fill, *v] for v in values]


def _entry(plan: ConfigPlan, identifier: str, norm: list[str], masks: list[bool],
           settings: PlannerSettings, forward: list[int]) -> dict[str, Any]:
    """plans.json entry of a configuration planned in working order; lists stored in input order."""
    topo = plan.topology
    return entry_to_input({
        "data_identifier": identifier,
        "spacing": [float(s) for s in plan.spacing],
        "median_shape": [float(m) for m in plan.median_shape],
        "patch_size": [int(p) for p in plan.patch_size],
        "batch_size": int(plan.batch_size),
        "conv_kernel_sizes": [list(k) for k in topo.conv_kernel_sizes],
        "pool_strides": [list(s) for s in topo.pool_strides],
        "num_pool_per_axis": list(topo.num_pool_per_axis),
        "features_per_stage": plan.features,
        "architecture": settings.architecture_for(topo.n_stages),
        "normalization": list(norm),
        "use_mask_for_norm": list(masks),
        "estimated_feature_map_voxels": int(plan.estimate),
        "memory_budget_voxels": float(plan.budget),
    }, forward)


def _plan_3d(
    spacing: list[float], median: list[float], dataset_voxels: float, dataset: DatasetSpec, n_train: int,
    gpu_memory_gb: float, settings: PlannerSettings, norm_masks: tuple[list[str], list[bool]], trace: list[str],
    forward: list[int],
) -> dict[str, dict[str, Any]]:
    """3d_fullres, and 3d_lowres + 3d_cascade_fullres when the cascade is triggered (working order)."""
    in_ch, n_cls = dataset.num_channels, dataset.num_label_keys
    trace.append("[3d_fullres]")
    full = plan_configuration(spacing, median, dataset_voxels, in_ch, n_cls, gpu_memory_gb, settings, trace)
    trace.append("[3d_lowres / cascade]")
    low = plan_lowres(full, n_train, in_ch, n_cls, gpu_memory_gb, settings, trace)
    # batch Dice as nnU-Net v2: on for 2d and for full-res when a cascade exists, off otherwise
    configs = {"3d_fullres": {**_entry(full, "3d_fullres", *norm_masks, settings, forward), "batch_dice": low is not None}}
    if low is not None:
        configs["3d_lowres"] = {**_entry(low, "3d_lowres", *norm_masks, settings, forward), "batch_dice": False,
                                "next_stage": "3d_cascade_fullres"}
        configs["3d_cascade_fullres"] = {**copy.deepcopy(configs["3d_fullres"]), "previous_stage": "3d_lowres"}
    return configs


def plan_experiment(
    fingerprint: Mapping[str, Any],
    dataset: DatasetSpec,
    gpu_memory_gb: float | None = None,
    settings: PlannerSettings = DEFAULT_SETTINGS,
) -> tuple[dict[str, Any], list[str]]:
    """Plans for 2d, 3d_fullres and (when triggered) 3d_lowres + 3d_cascade_fullres; and the rule trace.

    ``settings`` is a preset (:func:`toolkit.planning.presets.load_preset`); ``gpu_memory_gb`` None
    takes the preset's GPU-memory target, as nnU-Net's planners do without ``-gpu_memory_target``.
    """
    check_fingerprint(fingerprint)
    explicit_gpu = gpu_memory_gb is not None
    gpu_memory_gb = float(gpu_memory_gb) if explicit_gpu else settings.gpu_memory_gb
    if gpu_memory_gb <= 0:
        raise SegkitError(f"--gpu-memory-gb must be positive, got {gpu_memory_gb}")
    trace: list[str] = ["[preset]", *preset_rules(settings, gpu_memory_gb, explicit_gpu), "[normalization]"]
    spacings = _as_3d(fingerprint["spacings"], 999.0)
    shapes = _as_3d(fingerprint["shapes_after_crop"], 1)
    n_train = int(dataset.num_training) or len(spacings)
    norm_masks = normalization_schemes(
        dataset.channel_names, float(fingerprint["median_relative_size_after_cropping"]),
        bool(dataset.raw.get("use_mask_for_norm", False)), settings, trace)
    _check_ct_statistics(norm_masks[0], fingerprint["foreground_intensity_properties_per_channel"])
    trace.append("[spacing]")
    spacing = target_spacing(spacings, shapes, settings, trace)
    median = median_shape_at(spacings, shapes, spacing)
    dataset_voxels = float(np.prod(median)) * n_train
    trace.append(f"median shape at target spacing {'x'.join(f'{m:g}' for m in median)}; "
                 f"dataset ~{dataset_voxels:.3g} voxels ({n_train} cases)")
    forward, backward = nnunet_transpose(spacing)
    spacing, median = [spacing[a] for a in forward], [median[a] for a in forward]
    if forward != [0, 1, 2]:
        trace.append(f"[transpose] coarsest axis is {'zyx'[forward[0]]}: transpose_forward {forward}; the "
                     f"configurations are planned on axes ({', '.join('zyx'[a] for a in forward)}) in that order "
                     "(axis names below are positions in it); plans.json stores lists in (z, y, x) order")
    trace.append("[2d]")
    plan_2d = plan_configuration(spacing[1:], median[1:], dataset_voxels, dataset.num_channels,
                                 dataset.num_label_keys, gpu_memory_gb, settings, trace)
    configs = {"2d": {**_entry(plan_2d, "2d", *norm_masks, settings, forward), "batch_dice": True}}
    if median[0] > 1:
        configs.update(_plan_3d(spacing, median, dataset_voxels, dataset, n_train, gpu_memory_gb, settings,
                                norm_masks, trace, forward))
    else:
        trace.append("[3d] the images have one slice: 2d only")
    plans = {
        "dataset_name": dataset.name,
        "preset": settings.preset,
        "gpu_memory_gb": gpu_memory_gb,
        "transpose_forward": forward,
        "transpose_backward": backward,
        "anisotropy_threshold": settings.anisotropy_threshold,
        "original_median_spacing": [float(v) for v in np.median(np.asarray(spacings, dtype=float), axis=0)],
        "original_median_shape": [float(v) for v in np.median(np.asarray(shapes, dtype=float), axis=0)],
        "num_training": n_train,
        "num_classes": dataset.num_classes,
        "labels": dict(dataset.labels),
        "channel_names": dict(dataset.channel_names),
        "foreground_intensity_properties_per_channel": fingerprint["foreground_intensity_properties_per_channel"],
        "configurations": configs,
    }
    return plans, trace
