"""The cascade's previous-stage corruption (cascade.py) on the training device.

Same operators as the numpy path, computed without distance transforms or scipy labelling:
- a Euclidean ball of radius r (voxels at distance <= r) is a 0/1 convolution kernel; dilation =
  "a foreground voxel within r" (kernel sum > 0), erosion = "no background voxel of the patch
  within r" (the convolution's zero padding counts nothing outside, as ``distance_transform_edt``
  measures only to background voxels inside the array). Equal to ``cascade._ball_op`` voxel for voxel;
  a mask without any background voxel is measured from the virtual voxel (-1, 0, ..., 0) as scipy does;
- connected components (face connectivity, scipy.ndimage.label's default) by propagating the
  smallest linear index through the mask until nothing changes; sorting the components by that
  index is scipy's raster order, so "component floor(u * n) of the n small ones" picks the one
  ``integers(n)`` would name with the same position.
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F  # noqa: N812

from toolkit.training.device_loader import BINARY_OPS


def ball_kernel(radius: float, ndim: int, device: torch.device) -> torch.Tensor:
    """(1, 1, *k) float32 0/1 kernel of the voxels at distance <= ``radius`` from the centre."""
    r = int(math.floor(radius))
    axes = torch.meshgrid(*[torch.arange(-r, r + 1, dtype=torch.float64, device=device)] * ndim, indexing="ij")
    dist2 = sum(a * a for a in axes)
    return (dist2 <= radius * radius).to(torch.float32)[None, None]


def _within(mask: torch.Tensor, radius: float) -> torch.Tensor:
    """Voxels with a True voxel of ``mask`` (spatial, bool) at distance <= ``radius``."""
    kernel = ball_kernel(radius, mask.ndim, mask.device)
    conv = F.conv3d if mask.ndim == 3 else F.conv2d
    return conv(mask[None, None].to(torch.float32), kernel, padding=kernel.shape[-1] // 2)[0, 0] > 0.5


def _erode(mask: torch.Tensor, radius: float) -> torch.Tensor:
    if bool(mask.all()):  # scipy's distance transform then measures from the virtual voxel (-1, 0, ..., 0)
        grids = torch.meshgrid(*[torch.arange(int(a == 0), n + int(a == 0), dtype=torch.float64, device=mask.device)
                                 for a, n in enumerate(mask.shape)], indexing="ij")
        return sum(g * g for g in grids).sqrt() > radius
    return ~_within(~mask, radius)


def ball_op(mask: torch.Tensor, op: str, radius: float) -> torch.Tensor:
    """Dilation, erosion, opening or closing of a bool mask with a Euclidean ball (cascade._ball_op)."""
    def dilate(m: torch.Tensor) -> torch.Tensor:
        return m | _within(m, radius) if bool(m.any()) else m

    ops = {"dilation": dilate, "erosion": lambda m: _erode(m, radius),
           "opening": lambda m: dilate(_erode(m, radius)), "closing": lambda m: _erode(dilate(m), radius)}
    return ops[op](mask)


def component_ids(mask: torch.Tensor) -> torch.Tensor:
    """Each voxel of ``mask`` labelled with the smallest linear index (+1) of its face-connected
    component, 0 outside; propagated along one axis at a time (plus pointer jumping) until stable."""
    big = mask.numel() + 1
    ids = torch.where(mask, torch.arange(1, mask.numel() + 1, device=mask.device).reshape(mask.shape),
                      torch.full_like(mask, big, dtype=torch.int64))
    while True:
        before = ids
        for axis in range(mask.ndim):
            n = mask.shape[axis]
            if n < 2:
                continue
            lo, hi = ids.narrow(axis, 0, n - 1), ids.narrow(axis, 1, n - 1)
            nxt = ids.clone()
            nxt.narrow(axis, 1, n - 1).copy_(torch.minimum(hi, lo))
            nxt.narrow(axis, 0, n - 1).copy_(torch.minimum(nxt.narrow(axis, 0, n - 1), hi))
            ids = torch.where(mask, nxt, ids)
        flat = ids.flatten()  # pointer jumping: a label names a voxel of the same component
        ids = torch.where(mask, torch.minimum(ids, flat[(ids.clamp(max=mask.numel()) - 1)]), ids)
        if torch.equal(ids, before):
            return torch.where(mask, ids, torch.zeros_like(ids))


def remove_component(channel: torch.Tensor, u: float, max_fraction: float) -> torch.Tensor:
    """Remove component ``floor(u * n)`` (raster order) of the ``n`` components of the bool
    ``channel`` smaller than ``max_fraction`` of the patch; unchanged when there are none."""
    if not bool(channel.any()):
        return channel
    ids = component_ids(channel)
    values, sizes = torch.unique(ids[channel], return_counts=True)  # ascending: scipy's label order
    small = values[sizes < max_fraction * channel.numel()]
    if small.numel() == 0:
        return channel
    chosen = small[min(int(u * small.numel()), small.numel() - 1)]
    return channel & (ids != chosen)


def corrupt_previous_stage(onehot: torch.Tensor, binary: list[tuple[int, int, float]], remove_u: torch.Tensor,
                           max_fraction: float) -> torch.Tensor:
    """One sample's (K, ...) one-hot previous stage corrupted with drawn parameters
    (cascade.previous_stage_to_data's training branch); returns float32 one-hot."""
    out = onehot > 0.5
    for c, op, radius in binary:
        before = out[c]
        after = ball_op(before, BINARY_OPS[op], radius)
        gained = after & ~before
        out[1:] &= ~gained
        out[c] = after
    for c in range(1, out.shape[0]):
        u = float(remove_u[c - 1])
        if math.isfinite(u):
            out[c] = remove_component(out[c], u, max_fraction)
    out = out.to(torch.float32)
    out[0] = 1.0 - out[1:].amax(dim=0)
    return out
