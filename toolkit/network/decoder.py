"""The decoder and forward pass that both U-Nets share (docs/method.md 1.2 "Network").

A subclass builds its encoder and implements :meth:`UNetBase.encode` (one skip per stage, the
bottleneck last); this base adds, for resolutions ``n-2 .. 0``, a transposed conv (kernel = stride)
from the stage below, concatenation with the skip, the spec's decoder conv blocks, and the 1x1
segmentation heads of ``spec.built_head_resolutions``. The module names (``upsample``, ``decoder``,
``heads``) are part of the checkpoint format.
"""

from __future__ import annotations

import torch
from torch import nn

from toolkit.network.architecture import UNetSpec
from toolkit.network.layers import CONV, TCONV, conv_stack


class UNetBase(nn.Module):
    """Mirrored decoder and heads. ``deep_supervision`` switches between the training output (every
    head's logits, highest resolution first) and the single full-resolution logits for inference."""

    def __init__(self, spec: UNetSpec) -> None:
        super().__init__()
        self.spec = spec
        self.deep_supervision = spec.deep_supervision

    def _build_decoder(self) -> None:
        """Called by subclasses after their encoder, so modules register (and initialise) in data-flow order."""
        spec = self.spec
        nd, f = spec.ndim, spec.features
        # decoder index d = 0 .. n-2 runs from the lowest decoder resolution (n-2) up to resolution 0
        self.upsample = nn.ModuleList()
        self.decoder = nn.ModuleList()
        for r in range(spec.n_stages - 2, -1, -1):
            st = tuple(spec.strides[r + 1])
            self.upsample.append(TCONV[nd](f[r + 1], f[r], st, st, bias=True))
            self.decoder.append(conv_stack(nd, 2 * f[r], f[r], spec.kernel_sizes[r], (1,) * nd, spec.decoder_convs(r)))
        self.heads = nn.ModuleDict(
            {str(r): CONV[nd](f[r], spec.num_classes, 1, 1, 0, bias=True) for r in spec.built_head_resolutions}
        )

    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Feature maps of every encoder stage, highest resolution first."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        skips = self.encode(x)
        x = skips[-1]
        outputs: dict[int, torch.Tensor] = {}
        for d, (up, block) in enumerate(zip(self.upsample, self.decoder, strict=True)):
            res = self.spec.n_stages - 2 - d
            x = block(torch.cat((up(x), skips[res]), dim=1))
            if self.deep_supervision and str(res) in self.heads:
                outputs[res] = self.heads[str(res)](x)
        if not self.deep_supervision:
            return self.heads["0"](x)
        return [outputs[r] for r in sorted(outputs)]
