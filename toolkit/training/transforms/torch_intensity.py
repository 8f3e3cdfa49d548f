"""Steps 2-8 (noise, blur, brightness, contrast, low resolution, gamma, mirroring) for a batch on
the training device, plus the non-zero-mask reset.

Each function is the batched torch twin of the numpy one in :mod:`.intensity` / :mod:`.lowres`
(same formula, same operation order; equal on equal parameters to float32 rounding, checked in
tests/test_device_augment.py). Parameters are per (sample, channel) tensors, NaN where the step or
channel was not drawn; only the samples with a drawn step are computed.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
from torch.nn import functional as F  # noqa: N812

from toolkit.training.transforms.intensity import GAMMA_EPS
from toolkit.training.transforms.lowres import cubic_matrix, nearest_indices


def _drawn(params: np.ndarray, device: torch.device) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(indices of the samples with a drawn value in (n, c) ``params``, their (m, c) float32
    parameters) on ``device``, None if no sample drew the step (decided on the host: no sync)."""
    rows = np.flatnonzero(np.isfinite(params).any(axis=1))
    if rows.size == 0:
        return None
    return (torch.as_tensor(rows, device=device),
            torch.as_tensor(params[rows], dtype=torch.float32, device=device))


def gaussian_noise(data: torch.Tensor, std: np.ndarray, seeds: np.ndarray) -> torch.Tensor:
    """Sample b += N(0, 1) field * ``std[b]`` (NaN: none); the field from a generator seeded ``seeds[b]``."""
    for b in np.flatnonzero(np.isfinite(std)):
        gen = torch.Generator(device=data.device)
        gen.manual_seed(int(seeds[b]))
        field = torch.randn(data.shape[1:], generator=gen, device=data.device, dtype=torch.float32)
        data[b] += field * torch.tensor(std[b], dtype=torch.float32, device=data.device)
    return data


def brightness(data: torch.Tensor, factors: np.ndarray) -> torch.Tensor:
    """Multiply channel c of sample b by ``factors[b, c]`` (NaN: unchanged)."""
    drawn = _drawn(factors, data.device)
    if drawn is not None:
        rows, f = drawn
        f = torch.nan_to_num(f, nan=1.0)
        data[rows] = data[rows] * f.reshape(*f.shape, *[1] * (data.ndim - 2))
    return data


def _flat_stats(x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    flat = x.flatten(2)
    shape = (*x.shape[:2], *[1] * (x.ndim - 2))
    return tuple(v.reshape(shape) for v in (flat.mean(-1), flat.amin(-1), flat.amax(-1), flat.std(-1, correction=0)))


def contrast(data: torch.Tensor, factors: np.ndarray) -> torch.Tensor:
    """Scale each drawn channel about its mean, then clip to its original range."""
    drawn = _drawn(factors, data.device)
    if drawn is None:
        return data
    rows, f = drawn
    x = data[rows]
    mean, low, high, _ = _flat_stats(x)
    drawn = torch.isfinite(f).reshape(*f.shape, *[1] * (x.ndim - 2))
    new = ((x - mean) * torch.nan_to_num(f).reshape(drawn.shape) + mean).clamp(low, high)
    data[rows] = torch.where(drawn, new, x)
    return data


def gamma(data: torch.Tensor, gammas: np.ndarray, invert: bool) -> torch.Tensor:
    """Gamma on each drawn channel's [0, 1]-rescaled intensities (negated when ``invert``), keeping
    the channel's mean and std (intensity.gamma)."""
    drawn = _drawn(gammas, data.device)
    if drawn is None:
        return data
    sign = -1.0 if invert else 1.0
    rows, g = drawn
    x = data[rows] * sign
    drawn = torch.isfinite(g).reshape(*g.shape, *[1] * (x.ndim - 2))
    mean, low, high, std = _flat_stats(x)
    span = ((high - low).double() + GAMMA_EPS).to(torch.float32)
    new = torch.pow((x - low) / span, torch.nan_to_num(g, nan=1.0).reshape(drawn.shape)) * span + low
    new_mean, _, _, new_std = _flat_stats(new)
    new = (new - new_mean) * (std / (new_std + 1e-8)) + mean
    data[rows] = torch.where(drawn, new, x) * sign
    return data


def _gaussian_kernels(sigmas: np.ndarray, radius: int) -> np.ndarray:
    """(m, 2 * radius + 1) kernels (scipy's: truncate 4, normalised), zero beyond each own radius."""
    x = np.arange(-radius, radius + 1, dtype=float)
    out = np.zeros((len(sigmas), len(x)))
    for i, sigma in enumerate(sigmas):
        own = int(4.0 * float(sigma) + 0.5)
        phi = np.exp(-0.5 / float(sigma) ** 2 * x ** 2) * (np.abs(x) <= own)
        out[i] = phi / phi.sum()
    return out


def _symmetric_index(length: int, pad: int, device: torch.device) -> torch.Tensor:
    """Indices of scipy's 'reflect' extension (d c b a | a b c d | d c b a) by ``pad`` each side."""
    i = np.arange(-pad, length + pad) % (2 * length)
    return torch.as_tensor(np.where(i >= length, 2 * length - 1 - i, i), device=device)


def gaussian_blur(data: torch.Tensor, sigmas: np.ndarray) -> torch.Tensor:
    """Blur channel c of sample b with an isotropic Gaussian of sigma ``sigmas[b, c]`` (NaN: not
    blurred), separably along every spatial axis, scipy's reflect border: one grouped conv per axis."""
    bs, cs = np.nonzero(np.isfinite(sigmas))
    if len(bs) == 0:
        return data
    radius = max(int(4.0 * float(s) + 0.5) for s in sigmas[bs, cs])
    weights = torch.as_tensor(_gaussian_kernels(sigmas[bs, cs], radius), dtype=torch.float32, device=data.device)
    x = data[torch.as_tensor(bs, device=data.device), torch.as_tensor(cs, device=data.device)]  # (m, *spatial)
    ndim, m = x.ndim - 1, x.shape[0]
    conv = F.conv3d if ndim == 3 else F.conv2d
    for axis in range(ndim):
        padded = x.index_select(1 + axis, _symmetric_index(x.shape[1 + axis], radius, data.device))
        shape = [1] * ndim
        shape[axis] = weights.shape[1]
        x = conv(padded[None], weights.reshape(m, 1, *shape), groups=m)[0]
    for i, (b, c) in enumerate(zip(bs, cs, strict=True)):
        data[int(b), int(c)] = x[i]
    return data


@lru_cache(maxsize=512)
def _lowres_operators(n_in: int, n_out: int, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    return (torch.as_tensor(nearest_indices(n_in, n_out), device=device),
            torch.as_tensor(cubic_matrix(n_out, n_in), device=device))


def resize_down_up(channel: torch.Tensor, zoom: float, ignore_axes: tuple[int, ...] = ()) -> torch.Tensor:
    """lowres.resize_down_up on the device: nearest down to ``round(shape * zoom)``, cubic back, clipped."""
    shape = channel.shape
    small_shape = [n if a in ignore_axes else int(np.round(n * zoom)) for a, n in enumerate(shape)]
    small = channel
    for axis, (n, m) in enumerate(zip(shape, small_shape, strict=True)):
        if m != n:
            small = small.index_select(axis, _lowres_operators(n, m, str(channel.device))[0])
    out = small
    for axis, (n, m) in enumerate(zip(shape, small_shape, strict=True)):
        if m != n:
            out = torch.movedim(torch.tensordot(_lowres_operators(n, m, str(channel.device))[1], out,
                                                dims=([1], [axis])), 0, axis)
    return out.clamp(small.min(), small.max())


def simulate_low_resolution(data: torch.Tensor, zooms: np.ndarray, ignore_axes: tuple[int, ...] = ()) -> torch.Tensor:
    """Channel c of sample b: :func:`resize_down_up` by ``zooms[b, c]`` (NaN: left alone)."""
    for b, c in zip(*np.nonzero(np.isfinite(zooms)), strict=True):
        data[int(b), int(c)] = resize_down_up(data[int(b), int(c)], float(zooms[b, c]), ignore_axes)
    return data


def mirror(data: torch.Tensor, seg: torch.Tensor, flips: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Flip sample b of image and label along the spatial axes a with ``flips[b, a]``."""
    ndim = data.ndim - 2
    for b in range(data.shape[0]):
        dims = [1 + a for a in range(ndim) if flips[b, a]]
        if dims:
            data[b], seg[b] = data[b].flip(dims), seg[b].flip(dims)
    return data, seg


def reset_outside_mask(data: torch.Tensor, seg: torch.Tensor, channels: tuple[int, ...]) -> torch.Tensor:
    """Channels normalised inside the non-zero mask set to 0 where the label says outside (< 0)."""
    if channels:
        outside = seg[:, :1] < 0
        idx = list(channels)
        data[:, idx] = torch.where(outside, torch.zeros((), dtype=data.dtype, device=data.device), data[:, idx])
    return data
