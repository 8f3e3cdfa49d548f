"""The U-Net as plain data: one description shared by the planner and the torch network.

The planner's memory estimate (sum of all feature-map sizes) and the network that is actually built
both come from :class:`UNetSpec`, so the two can never disagree. This module imports no torch: the
planner stays a pure, GPU-free function of the fingerprint.

Conventions (docs/method.md 1.2):
- stage ``s`` has ``features_per_stage[s]`` channels and two conv blocks (conv -> IN -> LeakyReLU);
  the first conv of stage ``s > 0`` has stride ``strides[s]`` (stage 0 has stride 1);
- the decoder mirrors stages ``n-2 .. 0``: transposed conv (kernel = stride) up to the stage's
  resolution, concatenation with the skip, two conv blocks;
- deep-supervision heads (1x1 conv) sit on decoder resolutions ``0 .. n-3``: every decoder resolution
  except the two lowest of the network (bottleneck and lowest decoder stage). Resolution 0 always
  has a head; it is the only one used at inference.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from math import prod
from typing import Any

BASE_FEATURES = 32
MAX_FEATURES_3D = 320
MAX_FEATURES_2D = 512


def features_per_stage(n_stages: int, ndim: int) -> list[int]:
    """32 doubling per stage, capped at 320 (3D) / 512 (2D)."""
    cap = MAX_FEATURES_3D if ndim == 3 else MAX_FEATURES_2D
    return [min(BASE_FEATURES * 2**i, cap) for i in range(n_stages)]


@dataclass(frozen=True)
class UNetSpec:
    in_channels: int
    num_classes: int
    features: tuple[int, ...]
    kernel_sizes: tuple[tuple[int, ...], ...]  # one per stage
    strides: tuple[tuple[int, ...], ...]  # one per stage; stage 0 is all ones
    deep_supervision: bool = True

    @property
    def ndim(self) -> int:
        return len(self.kernel_sizes[0])

    @property
    def n_stages(self) -> int:
        return len(self.features)

    @property
    def head_resolutions(self) -> list[int]:
        """Decoder resolutions that carry a segmentation head (highest first)."""
        if not self.deep_supervision:
            return [0]
        return list(range(max(1, self.n_stages - 2)))

    @classmethod
    def from_plan(
        cls, plan: dict[str, Any], in_channels: int, num_classes: int, deep_supervision: bool = True
    ) -> UNetSpec:
        """Build from a plans.json configuration entry (``conv_kernel_sizes``, ``pool_strides``...)."""
        kernels = tuple(tuple(int(k) for k in ks) for ks in plan["conv_kernel_sizes"])
        ndim = len(kernels[0])
        strides = ((1,) * ndim,) + tuple(tuple(int(s) for s in st) for st in plan["pool_strides"])
        feats = tuple(plan.get("features_per_stage") or features_per_stage(len(kernels), ndim))
        if not (len(kernels) == len(strides) == len(feats)):
            raise ValueError("plan has inconsistent numbers of stages (kernels, strides, features)")
        return cls(in_channels, num_classes, feats, kernels, strides, deep_supervision)

    def stage_shapes(self, patch_size: Sequence[int]) -> list[tuple[int, ...]]:
        """Spatial shape of each stage's feature maps for an input patch."""
        shapes, shape = [], tuple(int(p) for p in patch_size)
        for stride in self.strides:
            shape = tuple(s // st for s, st in zip(shape, stride, strict=True))
            shapes.append(shape)
        return shapes

    def feature_map_voxels(self, patch_size: Sequence[int]) -> int:
        """Sum of the output sizes of every conv, transposed conv and head, for one sample."""
        shapes = self.stage_shapes(patch_size)
        total = 0
        for s, shape in enumerate(shapes):  # encoder: two convs per stage
            total += 2 * self.features[s] * prod(shape)
        for s in range(self.n_stages - 2, -1, -1):  # decoder: transposed conv + two convs
            total += 3 * self.features[s] * prod(shapes[s])
        for r in self.head_resolutions:
            total += self.num_classes * prod(shapes[r])
        return int(total)

    def num_parameters(self) -> int:
        """Trainable parameters of the network this spec builds (convs with bias, affine IN)."""
        def conv(cin: int, cout: int, kernel: Sequence[int]) -> int:
            return cin * cout * prod(kernel) + cout

        total, cin = 0, self.in_channels
        for s in range(self.n_stages):
            f, k = self.features[s], self.kernel_sizes[s]
            total += conv(cin, f, k) + 2 * f + conv(f, f, k) + 2 * f
            cin = f
        for s in range(self.n_stages - 2, -1, -1):
            f, k = self.features[s], self.kernel_sizes[s]
            total += conv(self.features[s + 1], f, self.strides[s + 1])  # transposed conv
            total += conv(2 * f, f, k) + 2 * f + conv(f, f, k) + 2 * f
        total += sum(conv(self.features[r], self.num_classes, (1,) * self.ndim) for r in self.head_resolutions)
        return int(total)

    def deep_supervision_weights(self) -> list[float]:
        """Loss weight per head, highest resolution first: 1/2^i normalised to sum 1."""
        raw = [1 / 2**i for i in range(len(self.head_resolutions))]
        return [w / sum(raw) for w in raw]
