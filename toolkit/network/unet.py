"""The plain U-Net of docs/method.md 1.2, built from a :class:`UNetSpec` and nothing else, and
:func:`build_network`, which builds the network a spec describes (plain or residual encoder).

Every layer size comes from the spec, so ``sum(p.numel())`` equals ``spec.num_parameters()`` and
the conv/transposed-conv/head outputs of a forward pass sum to ``spec.feature_map_voxels(patch)``
(both checked by tests): the planner's memory estimate describes exactly this network.

2D and 3D share the code; only the conv/norm classes differ. ``model.deep_supervision`` switches
between the training output (list of head outputs, highest resolution first) and the single
full-resolution logits tensor used at inference.
"""

from __future__ import annotations

import torch
from torch import nn

from toolkit.network.architecture import PLAIN_UNET, RESIDUAL_ENCODER_UNET, UNetSpec
from toolkit.network.decoder import UNetBase
from toolkit.network.layers import conv_stack, init_he
from toolkit.network.resenc import ResidualEncoderUNet


class UNet(UNetBase):
    """Encoder stages of ``n_blocks_per_stage`` conv blocks (the first one strided), shared decoder."""

    def __init__(self, spec: UNetSpec) -> None:
        super().__init__(spec)
        self.encoder = nn.ModuleList()
        cin = spec.in_channels
        for s in range(spec.n_stages):
            f = spec.features[s]
            self.encoder.append(conv_stack(spec.ndim, cin, f, spec.kernel_sizes[s], spec.strides[s],
                                           spec.n_blocks_per_stage[s]))
            cin = f
        self._build_decoder()
        self.apply(init_he)

    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        skips = []
        for stage in self.encoder:
            x = stage(x)
            skips.append(x)
        return skips


def build_network(spec: UNetSpec) -> UNetBase:
    """The torch network for ``spec`` (docs/interfaces.md "Network"), by ``spec.architecture``."""
    if spec.architecture == PLAIN_UNET:
        return UNet(spec)
    if spec.architecture == RESIDUAL_ENCODER_UNET:
        return ResidualEncoderUNet(spec)
    raise ValueError(f"no network for architecture {spec.architecture!r}")
