"""Building blocks shared by the U-Nets of this package (2D and 3D; only the torch classes differ).

Conv blocks are conv -> InstanceNorm(eps 1e-5, affine) -> LeakyReLU(0.01) with a bias and "same"
padding for odd kernels (docs/method.md 1.2 "Network"); :func:`init_he` is the reference
initialisation (Kaiming normal with a = 0.01, zero biases).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

CONV = {2: nn.Conv2d, 3: nn.Conv3d}
TCONV = {2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}
NORM = {2: nn.InstanceNorm2d, 3: nn.InstanceNorm3d}
AVG_POOL = {2: nn.AvgPool2d, 3: nn.AvgPool3d}


class ConvBlock(nn.Sequential):
    """conv -> InstanceNorm(eps 1e-5, affine) [-> LeakyReLU(0.01)]; 'same' padding for odd kernels."""

    def __init__(self, ndim: int, cin: int, cout: int, kernel: Sequence[int], stride: Sequence[int],
                 activation: bool = True) -> None:
        pad = tuple((k - 1) // 2 for k in kernel)
        layers: list[nn.Module] = [
            CONV[ndim](cin, cout, tuple(kernel), tuple(stride), pad, bias=True),
            NORM[ndim](cout, eps=1e-5, affine=True),
        ]
        if activation:
            layers.append(nn.LeakyReLU(0.01, inplace=True))
        super().__init__(*layers)


def conv_stack(ndim: int, cin: int, cout: int, kernel: Sequence[int], stride: Sequence[int], n: int) -> nn.Sequential:
    """``n`` conv blocks; the first one reads ``cin`` channels and carries the stride."""
    ones = (1,) * ndim
    return nn.Sequential(*(ConvBlock(ndim, cin if i == 0 else cout, cout, kernel, stride if i == 0 else ones)
                           for i in range(n)))


def init_he(module: nn.Module) -> None:
    """Kaiming-normal (a=0.01, matching LeakyReLU) for convs, zero biases: the reference init."""
    if isinstance(module, (nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.ConvTranspose3d)):
        nn.init.kaiming_normal_(module.weight, a=1e-2)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
