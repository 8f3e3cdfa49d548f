"""The U-Net as plain data: one description shared by the planner and the torch network.

The planner's memory estimate (sum of all feature-map sizes) and the network that is actually built
both come from :class:`UNetSpec`, so the two can never disagree. This module imports no torch: the
planner stays a pure, GPU-free function of the fingerprint.

Two architectures (``UNetSpec.architecture``), docs/method.md 1.2 "Network":

``plain_unet`` (the 2021 network):
- stage ``s`` has ``features[s]`` channels and ``n_blocks_per_stage[s]`` conv blocks (conv -> IN ->
  LeakyReLU); the first conv of stage ``s > 0`` has stride ``strides[s]`` (stage 0 has stride 1);
- deep-supervision heads (1x1 conv) sit on decoder resolutions ``0 .. n-3``: every decoder resolution
  except the two lowest of the network (bottleneck and lowest decoder stage). Resolution 0 always
  has a head; it is the only one used at inference.

``residual_encoder_unet`` (nnU-Net v2's ResidualEncoderUNet, "nnU-Net Revisited" 2024):
- a stem conv block (in_channels -> features[0], stage-0 kernel, stride 1);
- stage ``s`` is ``n_blocks_per_stage[s]`` basic residual blocks (ResNet-D): conv -> IN -> LeakyReLU
  -> conv -> IN, plus the skip, then LeakyReLU. Only the first block of a stage has the stride (in its
  first conv); its skip is avg-pool (kernel = stride) where it strides, then a bias-free 1x1 conv ->
  IN where the channel count changes;
- a head on every decoder resolution ``0 .. n-2`` (nnU-Net's decoder builds them all, so the
  parameter count and state dict layout equal dynamic_network_architectures'); in training every
  head runs and the lowest one gets loss weight 0 (nnU-Net's rule, :meth:`deep_supervision_weights`).

Both share the decoder: it mirrors stages ``n-2 .. 0``: transposed conv (kernel = stride) up to the
stage's resolution, concatenation with the skip, ``n_conv_per_stage_decoder[d]`` conv blocks, where
``d = 0`` is the lowest decoder stage (resolution ``n-2``), as in nnU-Net's plans.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from math import prod
from typing import Any

BASE_FEATURES = 32
MAX_FEATURES_3D = 320
MAX_FEATURES_2D = 512
PLAIN_UNET = "plain_unet"
RESIDUAL_ENCODER_UNET = "residual_encoder_unet"
ARCHITECTURES = (PLAIN_UNET, RESIDUAL_ENCODER_UNET)
DEFAULT_BLOCKS = 2  # convs (plain) / residual blocks per encoder stage and convs per decoder stage


def features_per_stage(n_stages: int, ndim: int) -> list[int]:
    """32 doubling per stage, capped at 320 (3D) / 512 (2D)."""
    cap = MAX_FEATURES_3D if ndim == 3 else MAX_FEATURES_2D
    return [min(BASE_FEATURES * 2**i, cap) for i in range(n_stages)]


def _counts(values: Sequence[int] | None, n: int, name: str) -> tuple[int, ...]:
    """Per-stage block counts, ``None`` -> 2 each; checked for length and positivity."""
    if values is None:
        return (DEFAULT_BLOCKS,) * n
    counts = tuple(int(v) for v in values)
    if len(counts) != n or any(c < 1 for c in counts):
        raise ValueError(f"{name} must list {n} positive integers, got {list(values)}")
    return counts


def _conv(cin: int, cout: int, kernel: Sequence[int], bias: bool = True) -> int:
    return cin * cout * prod(kernel) + (cout if bias else 0)


def _norm(channels: int) -> int:
    return 2 * channels  # affine InstanceNorm: weight and bias


@dataclass(frozen=True)
class UNetSpec:
    in_channels: int
    num_classes: int
    features: tuple[int, ...]
    kernel_sizes: tuple[tuple[int, ...], ...]  # one per stage
    strides: tuple[tuple[int, ...], ...]  # one per stage; stage 0 is all ones
    deep_supervision: bool = True
    architecture: str = PLAIN_UNET  # "plain_unet" | "residual_encoder_unet"
    n_blocks_per_stage: tuple[int, ...] | None = None  # encoder: plain = convs per stage, resenc = residual blocks; None -> 2 each
    n_conv_per_stage_decoder: tuple[int, ...] | None = None  # one per decoder stage (n_stages - 1); None -> 2 each

    def __post_init__(self) -> None:
        """Resolve ``None`` counts to 2 each, so equal networks have equal specs (and checkpoints)."""
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"unknown architecture {self.architecture!r} (known: {', '.join(ARCHITECTURES)})")
        n = len(self.features)
        object.__setattr__(self, "n_blocks_per_stage", _counts(self.n_blocks_per_stage, n, "n_blocks_per_stage"))
        object.__setattr__(self, "n_conv_per_stage_decoder",
                           _counts(self.n_conv_per_stage_decoder, max(n - 1, 0), "n_conv_per_stage_decoder"))

    @property
    def ndim(self) -> int:
        return len(self.kernel_sizes[0])

    @property
    def n_stages(self) -> int:
        return len(self.features)

    @property
    def residual(self) -> bool:
        return self.architecture == RESIDUAL_ENCODER_UNET

    @property
    def head_resolutions(self) -> list[int]:
        """Decoder resolutions whose head runs in a forward pass (highest first)."""
        if not self.deep_supervision:
            return [0]
        return list(range(max(1, self.n_stages - (1 if self.residual else 2))))

    @property
    def built_head_resolutions(self) -> list[int]:
        """Decoder resolutions that have a head module (ResEnc: all of them, whatever deep_supervision)."""
        if self.residual:
            return list(range(max(1, self.n_stages - 1)))
        return self.head_resolutions

    def decoder_convs(self, resolution: int) -> int:
        """Conv blocks of the decoder stage at ``resolution`` (index 0 of the list is resolution n-2)."""
        return self.n_conv_per_stage_decoder[self.n_stages - 2 - resolution]

    @classmethod
    def from_plan(
        cls, plan: dict[str, Any], in_channels: int, num_classes: int, deep_supervision: bool = True
    ) -> UNetSpec:
        """Build from a plans.json configuration entry (``conv_kernel_sizes``, ``pool_strides``,
        optional ``features_per_stage`` and ``architecture``; without the latter: plain U-Net, 2/2)."""
        kernels = tuple(tuple(int(k) for k in ks) for ks in plan["conv_kernel_sizes"])
        ndim = len(kernels[0])
        strides = ((1,) * ndim,) + tuple(tuple(int(s) for s in st) for st in plan["pool_strides"])
        feats = tuple(plan.get("features_per_stage") or features_per_stage(len(kernels), ndim))
        if not (len(kernels) == len(strides) == len(feats)):
            raise ValueError("plan has inconsistent numbers of stages (kernels, strides, features)")
        arch = plan.get("architecture")
        if arch is None:
            return cls(in_channels, num_classes, feats, kernels, strides, deep_supervision)
        if not isinstance(arch, Mapping) or "name" not in arch:
            raise ValueError('plan\'s "architecture" must be a mapping with a "name"')
        return cls(in_channels, num_classes, feats, kernels, strides, deep_supervision, str(arch["name"]),
                   arch.get("n_blocks_per_stage"), arch.get("n_conv_per_stage_decoder"))

    def to_fields(self) -> dict[str, Any]:
        """The fields as ints, strs, bools and lists (JSON- and ``weights_only``-safe; checkpoints)."""
        return {
            "in_channels": self.in_channels, "num_classes": self.num_classes, "features": list(self.features),
            "kernel_sizes": [list(k) for k in self.kernel_sizes], "strides": [list(s) for s in self.strides],
            "deep_supervision": self.deep_supervision, "architecture": self.architecture,
            "n_blocks_per_stage": list(self.n_blocks_per_stage),
            "n_conv_per_stage_decoder": list(self.n_conv_per_stage_decoder),
        }

    @classmethod
    def from_fields(cls, fields: Mapping[str, Any]) -> UNetSpec:
        """Inverse of :meth:`to_fields`; a dict from before the architecture keys is a plain U-Net."""
        def opt(key: str) -> tuple[int, ...] | None:
            return None if fields.get(key) is None else tuple(int(v) for v in fields[key])

        return cls(
            int(fields["in_channels"]), int(fields["num_classes"]), tuple(int(f) for f in fields["features"]),
            tuple(tuple(int(v) for v in k) for k in fields["kernel_sizes"]),
            tuple(tuple(int(v) for v in s) for s in fields["strides"]), bool(fields.get("deep_supervision", True)),
            str(fields.get("architecture", PLAIN_UNET)), opt("n_blocks_per_stage"), opt("n_conv_per_stage_decoder"),
        )

    def stage_shapes(self, patch_size: Sequence[int]) -> list[tuple[int, ...]]:
        """Spatial shape of each stage's feature maps for an input patch."""
        shapes, shape = [], tuple(int(p) for p in patch_size)
        for stride in self.strides:
            shape = tuple(s // st for s, st in zip(shape, stride, strict=True))
            shapes.append(shape)
        return shapes

    def _skip_projects(self, stage: int) -> bool:
        """Whether the first residual block of ``stage`` has a skip path (avg-pool and/or 1x1 conv)."""
        cin = self.features[stage - 1] if stage > 0 else self.features[0]
        return cin != self.features[stage] or any(s != 1 for s in self.strides[stage])

    def feature_map_voxels(self, patch_size: Sequence[int]) -> int:
        """Sum of the output sizes of every conv, transposed conv, residual skip and head, per sample.

        For ``residual_encoder_unet`` this is nnU-Net v2's ``compute_conv_feature_map_size`` of the
        same network (stem, both convs of each block, the skip of a projecting block)."""
        vox = [prod(shape) for shape in self.stage_shapes(patch_size)]
        f, total = self.features, 0
        if self.residual:
            total += f[0] * prod(int(p) for p in patch_size)  # stem
            for s in range(self.n_stages):
                total += 2 * self.n_blocks_per_stage[s] * f[s] * vox[s] + int(self._skip_projects(s)) * f[s] * vox[s]
        else:
            total += sum(self.n_blocks_per_stage[s] * f[s] * vox[s] for s in range(self.n_stages))
        for r in range(self.n_stages - 1):  # decoder: transposed conv + conv blocks
            total += (1 + self.decoder_convs(r)) * f[r] * vox[r]
        total += sum(self.num_classes * vox[r] for r in self.head_resolutions)
        return int(total)

    def _encoder_parameters(self) -> int:
        f, k, total = self.features, self.kernel_sizes, 0
        if self.residual:
            total += _conv(self.in_channels, f[0], k[0]) + _norm(f[0])  # stem
            for s in range(self.n_stages):
                cin = f[s - 1] if s > 0 else f[0]
                total += self.n_blocks_per_stage[s] * 2 * (_conv(f[s], f[s], k[s]) + _norm(f[s]))
                total += (cin - f[s]) * f[s] * prod(k[s])  # the first conv reads cin, not f[s], channels
                if cin != f[s]:
                    total += _conv(cin, f[s], (1,) * self.ndim, bias=False) + _norm(f[s])
            return total
        cin = self.in_channels
        for s in range(self.n_stages):
            total += _conv(cin, f[s], k[s]) + _norm(f[s])
            total += (self.n_blocks_per_stage[s] - 1) * (_conv(f[s], f[s], k[s]) + _norm(f[s]))
            cin = f[s]
        return total

    def num_parameters(self) -> int:
        """Trainable parameters of the network this spec builds (convs with bias, affine IN)."""
        f, k = self.features, self.kernel_sizes
        total = self._encoder_parameters()
        for r in range(self.n_stages - 1):
            total += _conv(f[r + 1], f[r], self.strides[r + 1])  # transposed conv
            total += _conv(2 * f[r], f[r], k[r]) + _norm(f[r])
            total += (self.decoder_convs(r) - 1) * (_conv(f[r], f[r], k[r]) + _norm(f[r]))
        total += sum(_conv(f[r], self.num_classes, (1,) * self.ndim) for r in self.built_head_resolutions)
        return int(total)

    def deep_supervision_weights(self) -> list[float]:
        """Loss weight per running head, highest resolution first: 1/2^i normalised to sum 1.

        ResEnc runs a head on the lowest decoder resolution too; nnU-Net gives it weight 0 (the term
        stays in the graph, so data-parallel training sees no unused parameters)."""
        raw = [1 / 2**i for i in range(len(self.head_resolutions))]
        if self.residual and len(raw) > 1:
            raw[-1] = 0.0
        return [w / sum(raw) for w in raw]
