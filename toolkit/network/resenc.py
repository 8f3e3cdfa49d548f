"""The residual-encoder U-Net ("nnU-Net Revisited", MICCAI 2024; nnU-Net v2's ResEnc presets),
built from a :class:`UNetSpec` with ``architecture == "residual_encoder_unet"`` and nothing else.

Layout (docs/method.md 1.2 "Network"; the same layers as dynamic_network_architectures'
ResidualEncoderUNet with BasicBlockD, conv bias, affine InstanceNorm and LeakyReLU, so the parameter
count is the same): a stem conv block, then per stage ``n_blocks_per_stage[s]`` basic residual
blocks whose first one carries the stage's stride; the plain U-Net's decoder; a head on every
decoder resolution. Initialisation as the reference: He for every conv, and the last norm of each
residual block set to zero, so every block starts as its skip path.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from toolkit.network.architecture import UNetSpec
from toolkit.network.decoder import UNetBase
from toolkit.network.layers import AVG_POOL, CONV, NORM, ConvBlock, init_he


class ResidualBlock(nn.Module):
    """ResNet-D basic block: conv-IN-LReLU, conv-IN, plus the skip, then LReLU. Where the block
    strides the skip average-pools (kernel = stride); where channels change it adds a bias-free 1x1
    conv and IN."""

    def __init__(self, ndim: int, cin: int, cout: int, kernel: Sequence[int], stride: Sequence[int]) -> None:
        super().__init__()
        self.conv1 = ConvBlock(ndim, cin, cout, kernel, stride)
        self.conv2 = ConvBlock(ndim, cout, cout, kernel, (1,) * ndim, activation=False)
        skip: list[nn.Module] = []
        if any(s != 1 for s in stride):
            skip.append(AVG_POOL[ndim](tuple(stride), tuple(stride)))
        if cin != cout:
            skip += [CONV[ndim](cin, cout, 1, 1, 0, bias=False), NORM[ndim](cout, eps=1e-5, affine=True)]
        self.skip = nn.Sequential(*skip) if skip else nn.Identity()
        self.act = nn.LeakyReLU(0.01, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2(self.conv1(x))
        out += self.skip(x)
        return self.act(out)


class ResidualEncoderUNet(UNetBase):
    """Stem, residual encoder stages, shared decoder and heads (see the module docstring)."""

    def __init__(self, spec: UNetSpec) -> None:
        super().__init__(spec)
        nd, f, k = spec.ndim, spec.features, spec.kernel_sizes
        self.stem = ConvBlock(nd, spec.in_channels, f[0], k[0], (1,) * nd)
        self.encoder = nn.ModuleList()
        cin = f[0]
        for s in range(spec.n_stages):
            blocks = [ResidualBlock(nd, cin if b == 0 else f[s], f[s], k[s], spec.strides[s] if b == 0 else (1,) * nd)
                      for b in range(spec.n_blocks_per_stage[s])]
            self.encoder.append(nn.Sequential(*blocks))
            cin = f[s]
        self._build_decoder()
        self.apply(init_he)
        for module in self.modules():
            if isinstance(module, ResidualBlock):
                nn.init.zeros_(module.conv2[1].weight)
                nn.init.zeros_(module.conv2[1].bias)

    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        skips = []
        for stage in self.encoder:
            x = stage(x)
            skips.append(x)
        return skips
