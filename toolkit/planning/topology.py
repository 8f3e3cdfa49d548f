"""Network topology from a patch size and a spacing (docs/method.md 1.3 "Topology").

Pooling: repeatedly halve the axes whose current spacing is within ``pool_spacing_ratio`` (2x) of the
finest current spacing among the axes still large enough (feature map >= 2 x min edge, i.e. 8
voxels, so it never goes below 4); a lone eligible axis needs >= 3 x min edge (12 voxels).
Kernels: 1 along an axis while its current spacing is >= 2x the finest (pseudo-2D on anisotropic
data), otherwise 3, and once 3 it stays 3. The rule is applied at the bottleneck too (nnU-Net v2
always uses 3 there; the rule of docs/method.md 1.3 "Topology" is stated per stage, and it wins). The patch is padded up to
a multiple of 2^(poolings) per axis.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from toolkit.planning.settings import DEFAULT_SETTINGS, PlannerSettings


@dataclass(frozen=True)
class Topology:
    """Strides (one per downsampling), kernels (one per stage) and the padded patch size."""

    pool_strides: tuple[tuple[int, ...], ...]
    conv_kernel_sizes: tuple[tuple[int, ...], ...]
    patch_size: tuple[int, ...]

    @property
    def num_pool_per_axis(self) -> tuple[int, ...]:
        ndim = len(self.patch_size)
        return tuple(sum(1 for s in self.pool_strides if s[d] == 2) for d in range(ndim))

    @property
    def divisor(self) -> tuple[int, ...]:
        """The patch must be divisible by this per axis."""
        return tuple(2**n for n in self.num_pool_per_axis)

    @property
    def n_stages(self) -> int:
        return len(self.conv_kernel_sizes)

    @property
    def stage_strides(self) -> tuple[tuple[int, ...], ...]:
        """Strides per stage as :class:`UNetSpec` wants them (stage 0 is all ones)."""
        return ((1,) * len(self.patch_size),) + self.pool_strides


def _kernel_update(kernel: list[int], spacing: list[float], ratio: float) -> list[int]:
    finest = min(spacing)
    return [3 if k == 3 or sp / finest < ratio else 1 for k, sp in zip(kernel, spacing, strict=True)]


def pad_to_divisor(shape: Sequence[int], divisor: Sequence[int]) -> tuple[int, ...]:
    """Smallest shape >= ``shape`` that is divisible by ``divisor`` per axis."""
    return tuple(int(math.ceil(s / d) * d) for s, d in zip(shape, divisor, strict=True))


def plan_topology(
    spacing: Sequence[float], patch_size: Sequence[float], settings: PlannerSettings = DEFAULT_SETTINGS
) -> Topology:
    """Pooling strides and conv kernels for ``patch_size`` at ``spacing``, and the padded patch."""
    ndim = len(spacing)
    cur_spacing = [float(s) for s in spacing]
    cur_size = [int(math.ceil(p)) for p in patch_size]
    min_edge, ratio = settings.min_feature_map_edge, settings.pool_spacing_ratio
    kernel = [1] * ndim
    strides: list[tuple[int, ...]] = []
    kernels: list[tuple[int, ...]] = []
    while True:
        big_enough = [d for d in range(ndim) if cur_size[d] >= 2 * min_edge]
        if not big_enough:
            break
        finest = min(cur_spacing[d] for d in big_enough)
        axes = [d for d in big_enough if cur_spacing[d] / finest < ratio]
        if len(axes) == 1 and cur_size[axes[0]] < 3 * min_edge:
            break
        kernel = _kernel_update(kernel, cur_spacing, ratio)
        kernels.append(tuple(kernel))
        strides.append(tuple(2 if d in axes else 1 for d in range(ndim)))
        for d in axes:
            cur_spacing[d] *= 2
            cur_size[d] = int(math.ceil(cur_size[d] / 2))
    kernels.append(tuple(_kernel_update(kernel, cur_spacing, ratio)))
    pools = [sum(1 for s in strides if s[d] == 2) for d in range(ndim)]
    padded = pad_to_divisor([int(math.ceil(p)) for p in patch_size], [2**n for n in pools])
    return Topology(tuple(strides), tuple(kernels), padded)
