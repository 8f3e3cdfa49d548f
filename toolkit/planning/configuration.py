"""Patch size, topology and batch size of one configuration under the GPU-memory budget.

Memory is estimated as the per-sample sum of all feature-map voxels of the planned network, taken
from :meth:`toolkit.network.architecture.UNetSpec.feature_map_voxels` (the same description that
builds the torch network, plain or residual-encoder U-Net as the preset says; like nnU-Net's planner,
without the lower deep-supervision heads), and compared with a
reference value known to fit the reference GPU at a reference batch size (docs/method.md 1.3). The
budget scales linearly with ``gpu_memory_gb``: batch ``b`` fits when
``b * estimate <= reference * reference_batch * gpu_memory_gb / reference_gpu_gb``.

Batch size: the patch is shrunk until the preset's fit batch fits (batch 2 for the default planner,
the reference batch for nnU-Net's ResEnc planners), then the batch grows into the remaining headroom
(rounded down, so the plan stays inside the budget; nnU-Net v2 rounds to nearest), then it is capped
so one batch holds at most the preset's fraction (5% by default) of the resampled training set's
voxels, and it is never below 2.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from toolkit.network.architecture import UNetSpec, features_per_stage
from toolkit.planning.settings import DEFAULT_SETTINGS, PlannerSettings
from toolkit.planning.spacing import axis_name
from toolkit.planning.topology import Topology, plan_topology


@dataclass(frozen=True)
class ConfigPlan:
    """One planned configuration (spacing, shapes, topology, batch and the memory numbers behind it)."""

    spacing: tuple[float, ...]
    median_shape: tuple[float, ...]
    topology: Topology
    batch_size: int
    estimate: int  # feature-map voxels of one sample
    budget: float  # feature-map voxels that fit in memory (all samples of a batch together)

    @property
    def patch_size(self) -> tuple[int, ...]:
        return self.topology.patch_size

    @property
    def features(self) -> list[int]:
        return features_per_stage(self.topology.n_stages, len(self.spacing))


def _fmt(values: Sequence[float]) -> str:
    return "x".join(f"{v:g}" for v in values)


def initial_patch(
    spacing: Sequence[float], median_shape: Sequence[float], settings: PlannerSettings = DEFAULT_SETTINGS
) -> list[int]:
    """Isotropic-in-mm patch with the volume of 256^3 (3D) / area of 2048^2 (2D), clipped to the median."""
    inv = 1.0 / np.asarray(spacing, dtype=np.float64)
    ndim = len(spacing)
    edge = settings.initial_patch_edge_3d if ndim == 3 else settings.initial_patch_edge_2d
    scaled = [round(float(v)) for v in inv * (edge**ndim / float(np.prod(inv))) ** (1 / ndim)]
    return [int(math.ceil(min(p, m))) for p, m in zip(scaled, median_shape, strict=True)]


def estimate_voxels(
    topology: Topology, in_channels: int, num_classes: int, settings: PlannerSettings = DEFAULT_SETTINGS
) -> int:
    """Per-sample feature-map voxels of the network this topology builds (via :class:`UNetSpec`).

    Counted without the deep-supervision heads (only the full-resolution head), as nnunetv2's planners
    do: they instantiate the network with its default ``deep_supervision=False`` for the estimate, and
    the reference values were tuned on that count.
    """
    ndim = len(topology.patch_size)
    arch = settings.architecture_for(topology.n_stages)
    spec = UNetSpec(
        in_channels,
        num_classes,
        tuple(features_per_stage(topology.n_stages, ndim)),
        topology.conv_kernel_sizes,
        topology.stage_strides,
        architecture=str(arch["name"]),
        n_blocks_per_stage=tuple(arch["n_blocks_per_stage"]),
        n_conv_per_stage_decoder=tuple(arch["n_conv_per_stage_decoder"]),
        deep_supervision=False,
    )
    return spec.feature_map_voxels(topology.patch_size)


def _shrink_once(
    topo: Topology, spacing: Sequence[float], median_shape: Sequence[float], settings: PlannerSettings
) -> tuple[Topology, int, int] | None:
    """Shrink the axis with the largest patch/median ratio by one divisibility step; None if impossible.

    The step is the divisor of the patch *after* subtracting the current divisor: a fixed step of the
    current divisor would skip valid sizes (256 -> 192 skips 224 when 224 needs fewer poolings).
    """
    patch = list(topo.patch_size)
    order = np.argsort([p / m for p, m in zip(patch, median_shape, strict=True)])[::-1]
    for axis in (int(a) for a in order):
        probe = list(patch)
        probe[axis] -= topo.divisor[axis]
        if probe[axis] < 1:
            continue
        step = plan_topology(spacing, probe, settings).divisor[axis]
        if patch[axis] - step < 1:
            continue
        patch[axis] -= step
        return plan_topology(spacing, patch, settings), axis, step
    return None


def plan_configuration(
    spacing: Sequence[float],
    median_shape: Sequence[float],
    dataset_voxels: float,
    in_channels: int,
    num_classes: int,
    gpu_memory_gb: float = 8.0,
    settings: PlannerSettings = DEFAULT_SETTINGS,
    trace: list[str] | None = None,
) -> ConfigPlan:
    """Plan patch, topology and batch size for one configuration (2D when ``spacing`` has 2 entries).

    ``dataset_voxels`` is the approximate voxel count of the resampled training set (5% batch cap).
    """
    notes = trace if trace is not None else []
    ndim = len(spacing)
    ref_bs, fit_bs = settings.reference_batch(ndim), settings.fit_batch(ndim)
    budget = settings.reference_voxels(ndim, gpu_memory_gb) * ref_bs
    start = initial_patch(spacing, median_shape, settings)
    topo = plan_topology(spacing, start, settings)
    est = estimate_voxels(topo, in_channels, num_classes, settings)
    notes.append(
        f"patch: start {_fmt(start)} (isotropic in mm, clipped to median {_fmt(median_shape)}) "
        f"-> padded {_fmt(topo.patch_size)}; budget {budget:.3g} feature-map voxels per batch"
    )
    while fit_bs * est > budget:
        step = _shrink_once(topo, spacing, median_shape, settings)
        if step is None:
            notes.append(f"patch {_fmt(topo.patch_size)} cannot shrink further; batch {fit_bs} exceeds the budget")
            break
        new_topo, axis, size = step
        notes.append(
            f"patch {_fmt(topo.patch_size)} needs {fit_bs * est / budget:.2f}x budget at batch "
            f"{fit_bs} -> shrink {axis_name(axis, ndim)} by {size}"
        )
        topo = new_topo
        est = estimate_voxels(topo, in_channels, num_classes, settings)
    batch = max(int(budget // est), settings.min_batch_size)
    notes.append(f"patch {_fmt(topo.patch_size)}: {est:.3g} voxels/sample -> batch {batch} by headroom")
    frac = settings.max_dataset_fraction_per_batch
    cap = round(dataset_voxels * frac / float(np.prod(topo.patch_size)))
    if cap < batch:
        notes.append(
            f"batch {batch} would hold > {frac:.0%} of the dataset's "
            f"{dataset_voxels:.3g} voxels -> batch {max(cap, settings.min_batch_size)}"
        )
        batch = max(cap, settings.min_batch_size)
    return ConfigPlan(tuple(float(s) for s in spacing), tuple(float(m) for m in median_shape), topo,
                      int(batch), int(est), float(budget))
