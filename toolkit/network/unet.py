"""The plain U-Net of docs/method.md 1.2, built from a :class:`UNetSpec` and nothing else.

Every layer size comes from the spec, so ``sum(p.numel())`` equals ``spec.num_parameters()`` and
the conv/transposed-conv/head outputs of a forward pass sum to ``spec.feature_map_voxels(patch)``
(both checked by tests): the planner's memory estimate describes exactly this network.

2D and 3D share the code; only the conv/norm classes differ. ``model.deep_supervision`` switches
between the training output (list of head outputs, highest resolution first) and the single
full-resolution logits tensor used at inference.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from toolkit.network.architecture import UNetSpec

_CONV = {2: nn.Conv2d, 3: nn.Conv3d}
_TCONV = {2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}
_NORM = {2: nn.InstanceNorm2d, 3: nn.InstanceNorm3d}


class ConvBlock(nn.Sequential):
    """conv -> InstanceNorm(eps 1e-5, affine) -> LeakyReLU(0.01); 'same' padding for odd kernels."""

    def __init__(self, ndim: int, cin: int, cout: int, kernel: Sequence[int], stride: Sequence[int]) -> None:
        pad = tuple((k - 1) // 2 for k in kernel)
        super().__init__(
            _CONV[ndim](cin, cout, tuple(kernel), tuple(stride), pad, bias=True),
            _NORM[ndim](cout, eps=1e-5, affine=True),
            nn.LeakyReLU(0.01, inplace=True),
        )


def _stage(ndim: int, cin: int, cout: int, kernel: Sequence[int], stride: Sequence[int]) -> nn.Sequential:
    """Two conv blocks; the first one carries the stage's stride (strided-conv downsampling)."""
    return nn.Sequential(
        ConvBlock(ndim, cin, cout, kernel, stride), ConvBlock(ndim, cout, cout, kernel, (1,) * ndim)
    )


class UNet(nn.Module):
    """Encoder stages, mirrored decoder (transposed conv, concat skip, two conv blocks), 1x1 heads."""

    def __init__(self, spec: UNetSpec) -> None:
        super().__init__()
        self.spec = spec
        nd, f = spec.ndim, spec.features
        self.encoder = nn.ModuleList()
        cin = spec.in_channels
        for s in range(spec.n_stages):
            self.encoder.append(_stage(nd, cin, f[s], spec.kernel_sizes[s], spec.strides[s]))
            cin = f[s]
        # decoder index d = 0 .. n-2 runs from the lowest decoder resolution (n-2) up to resolution 0
        self.upsample = nn.ModuleList()
        self.decoder = nn.ModuleList()
        for s in range(spec.n_stages - 2, -1, -1):
            st = spec.strides[s + 1]
            self.upsample.append(_TCONV[nd](f[s + 1], f[s], tuple(st), tuple(st), bias=True))
            self.decoder.append(_stage(nd, 2 * f[s], f[s], spec.kernel_sizes[s], (1,) * nd))
        self.heads = nn.ModuleDict(
            {str(r): _CONV[nd](f[r], spec.num_classes, 1, 1, 0, bias=True) for r in spec.head_resolutions}
        )
        self.deep_supervision = spec.deep_supervision
        self.apply(_init_he)

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        skips = []
        for stage in self.encoder:
            x = stage(x)
            skips.append(x)
        outputs: dict[int, torch.Tensor] = {}
        for d, (up, block) in enumerate(zip(self.upsample, self.decoder, strict=True)):
            res = self.spec.n_stages - 2 - d
            x = block(torch.cat((up(x), skips[res]), dim=1))
            if self.deep_supervision and str(res) in self.heads:
                outputs[res] = self.heads[str(res)](x)
        if not self.deep_supervision:
            return self.heads["0"](x)
        return [outputs[r] for r in sorted(outputs)]


def _init_he(module: nn.Module) -> None:
    """Kaiming-normal (a=0.01, matching LeakyReLU) for convs, zero biases: the reference init."""
    if isinstance(module, (nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.ConvTranspose3d)):
        nn.init.kaiming_normal_(module.weight, a=1e-2)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def build_network(spec: UNetSpec) -> UNet:
    """The torch U-Net for ``spec`` (docs/interfaces.md "Network")."""
    return UNet(spec)
