"""Sliding-window prediction of one preprocessed case (docs/method.md 2).

Rules implemented here:
- window = training patch; windows spread evenly with a step of ``step`` x patch (0.5 by default):
  per axis ``n = ceil((size - patch) / (step * patch)) + 1`` windows whose starts are rounded from an
  even spacing between 0 and ``size - patch`` (so the first and last window touch the borders);
- images smaller than the patch are zero-padded (centred) to one patch and the padding is cut off after;
- every window's logits are weighted by a Gaussian importance map (sigma = patch / 8 per axis, peak 1,
  zeros replaced by the smallest non-zero value so no voxel has weight 0); weighted logits and weights
  are accumulated and divided at the end;
- mirroring test-time augmentation over every subset of ``mirror_axes`` (8 passes for 3 axes, 4 for 2):
  input flipped, output flipped back, logits averaged over the passes;
- the nonlinearity (``softmax`` over classes, ``sigmoid`` per region for region datasets, or none to
  keep logits) is applied once, to the accumulated logits;
- a 2D network (patch of length 2) predicts slice by slice over z: it is a 3D sliding window whose
  patch is one voxel thick along z, the slice axis squeezed away for the forward pass.

Speed: several windows are stacked into one forward pass (``batch_windows``), the accumulators live on
the network's device, inference runs under ``torch.inference_mode`` and under the autocast policy of
``precision`` (toolkit.precision: by default bf16/fp16 on CUDA, fp32 on CPU, bf16 on CPU on request).
If the accumulators do not fit in GPU memory the whole case is redone
with CPU accumulators (windows still run on the GPU); an OOM inside a forward pass halves the batch.

Logits (not probabilities) are accumulated over windows and mirror passes, and the nonlinearity comes
last, as nnU-Net v2 does (``predict_sliding_window_return_logits``, then the label manager's
``apply_inference_nonlin``); the fold ensemble of :class:`toolkit.inference.predictor.Predictor`
likewise averages the folds' logits before the nonlinearity.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Sequence
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from toolkit.precision import autocast, resolve_inference_precision

SIGMA_SCALE = 1.0 / 8
NONLINEARITIES = ("softmax", "sigmoid", None)


def apply_nonlinearity(logits: torch.Tensor, nonlinearity: str | None, dim: int = 0) -> torch.Tensor:
    """Probabilities from logits: softmax over ``dim``, sigmoid per channel, or the logits (None)."""
    if nonlinearity == "softmax":
        return torch.softmax(logits, dim=dim)
    if nonlinearity == "sigmoid":
        return torch.sigmoid(logits)
    if nonlinearity is None:
        return logits
    raise ValueError(f"nonlinearity must be one of {NONLINEARITIES}, got {nonlinearity!r}")


def window_starts(image_size: Sequence[int], patch_size: Sequence[int], step: float | Sequence[float]
                  ) -> list[list[int]]:
    """Start index of every window along every axis; ``image_size >= patch_size`` per axis."""
    steps = [step] * len(patch_size) if isinstance(step, (int, float)) else list(step)
    out = []
    for size, patch, st in zip(image_size, patch_size, steps, strict=True):
        if size < patch:
            raise ValueError(f"image size {size} is smaller than the patch {patch}; pad first")
        if not 0 < st <= 1:
            raise ValueError(f"step must be in (0, 1], got {st}")
        n = math.ceil((size - patch) / (patch * st)) + 1
        actual = (size - patch) / (n - 1) if n > 1 else 0.0
        out.append([int(round(actual * i)) for i in range(n)])
    return out


@lru_cache(maxsize=16)
def _gaussian_np(patch_size: tuple[int, ...], sigma_scale: float) -> np.ndarray:
    """Gaussian centred in the patch, peak 1, minimum strictly positive. Cached per patch size."""
    from scipy.ndimage import gaussian_filter

    delta = np.zeros(patch_size, dtype=np.float64)
    delta[tuple(p // 2 for p in patch_size)] = 1.0
    g = gaussian_filter(delta, [p * sigma_scale for p in patch_size], order=0, mode="constant", cval=0.0)
    g /= g.max()
    g[g == 0] = g[g > 0].min()
    g = g.astype(np.float32)
    g.flags.writeable = False
    return g


_GAUSS_CACHE: dict[tuple, torch.Tensor] = {}


def gaussian_importance_map(patch_size: Sequence[int], device: torch.device | str = "cpu",
                            dtype: torch.dtype = torch.float32, sigma_scale: float = SIGMA_SCALE
                            ) -> torch.Tensor:
    """Importance map for one window (shape = patch), cached per (patch, device, dtype)."""
    key = (tuple(int(p) for p in patch_size), str(torch.device(device)), dtype, sigma_scale)
    if key not in _GAUSS_CACHE:
        g = torch.from_numpy(_gaussian_np(key[0], sigma_scale).copy())
        _GAUSS_CACHE[key] = g.to(device=device, dtype=dtype)
    return _GAUSS_CACHE[key]


def mirror_variants(mirror_axes: Sequence[int] | None) -> list[tuple[int, ...]]:
    """Every subset of the mirror axes (the empty subset = identity first): 2^len(axes) passes."""
    axes = tuple(mirror_axes or ())
    return [c for r in range(len(axes) + 1) for c in itertools.combinations(axes, r)]


def _pad_to_patch(data: torch.Tensor, patch: Sequence[int]) -> tuple[torch.Tensor, tuple[slice, ...]]:
    """Zero-pad (centred) so every spatial axis is at least the patch; return the crop that undoes it."""
    spatial = data.shape[1:]
    before = [max(0, p - s) // 2 for s, p in zip(spatial, patch, strict=True)]
    after = [max(0, p - s) - b for s, p, b in zip(spatial, patch, before, strict=True)]
    crop = tuple(slice(b, b + s) for b, s in zip(before, spatial, strict=True))
    if not any(before) and not any(after):
        return data, crop
    pad = [v for b, a in zip(reversed(before), reversed(after), strict=True) for v in (b, a)]
    return F.pad(data, pad, mode="constant", value=0.0), crop


def _network_device(network: torch.nn.Module) -> torch.device:
    p = next(iter(network.parameters()), None)
    return p.device if p is not None else torch.device("cpu")


def _windows(shape: Sequence[int], patch3: Sequence[int], steps: Sequence[float]) -> list[tuple[slice, ...]]:
    starts = window_starts(shape, patch3, steps)
    return [tuple(slice(s, s + p) for s, p in zip(corner, patch3, strict=True))
            for corner in itertools.product(*starts)]


def _chunks(items: list, n: int) -> Iterator[list]:
    for i in range(0, len(items), n):
        yield items[i:i + n]


def _predict_tta(network: torch.nn.Module, x: torch.Tensor, variants: list[tuple[int, ...]],
                 device: torch.device, policy: str = "fp32") -> torch.Tensor:
    """Logits of a batch of windows averaged over the mirror passes: (B, K, *spatial) float32."""
    total = None
    with autocast(policy, device.type):
        for axes in variants:
            dims = [a + 2 for a in axes]
            out = network(torch.flip(x, dims) if dims else x)
            if isinstance(out, (list, tuple)):  # deep supervision left on: highest resolution first
                out = out[0]
            prob = out.float()
            if dims:
                prob = torch.flip(prob, dims)
            total = prob if total is None else total.add_(prob)
    assert total is not None
    return total.div_(len(variants)) if len(variants) > 1 else total


def _auto_batch(network: torch.nn.Module, sample: torch.Tensor, device: torch.device, n_windows: int,
                policy: str = "fp32") -> int:
    """Windows per forward pass. CPU: 1 (throughput per voxel does not grow with the batch there and
    the activations would multiply peak RSS). CUDA: as many as half the free memory holds, at most 8,
    measured from one probe forward pass."""
    if device.type != "cuda" or n_windows <= 1:
        return 1
    torch.cuda.synchronize(device)
    base = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    with autocast(policy, device.type):
        network(sample)
    per_window = max(1, torch.cuda.max_memory_allocated(device) - base)
    free, _ = torch.cuda.mem_get_info(device)
    return int(max(1, min(8, n_windows, (0.5 * free) // per_window)))


def _accumulate(network: torch.nn.Module, data: torch.Tensor, windows: list[tuple[slice, ...]],
                gauss: torch.Tensor, is_2d: bool, variants: list[tuple[int, ...]], num_classes: int,
                device: torch.device, results_device: torch.device, batch: int, policy: str = "fp32"
                ) -> torch.Tensor:
    """Run every window, accumulate weighted logits and weights on ``results_device``, divide."""
    acc = torch.zeros((num_classes, *data.shape[1:]), dtype=torch.float32, device=results_device)
    weights = torch.zeros(data.shape[1:], dtype=torch.float32, device=results_device)
    gauss = gauss.to(results_device)
    i = 0
    while i < len(windows):
        chunk = windows[i:i + batch]
        x = torch.stack([data[(slice(None), *w)] for w in chunk]).to(device, non_blocking=True)
        if is_2d:
            x = x[:, :, 0]
        try:
            prob = _predict_tta(network, x, variants, device, policy)
        except torch.cuda.OutOfMemoryError:
            if batch == 1:
                raise
            torch.cuda.empty_cache()
            batch = max(1, batch // 2)
            continue
        if is_2d:
            prob = prob.unsqueeze(2)
        prob = prob.to(results_device, non_blocking=True)
        for j, w in enumerate(chunk):
            acc[(slice(None), *w)].addcmul_(prob[j], gauss)
            weights[w].add_(gauss)
        i += len(chunk)
    return acc.div_(weights)


def sliding_window_predict(network: torch.nn.Module, data: torch.Tensor | np.ndarray, patch_size: Sequence[int],
                           num_classes: int, step: float = 0.5, mirror_axes: Sequence[int] | None = (0, 1, 2),
                           device: torch.device | str | None = None, batch_windows: int | None = None,
                           precision: str = "auto", nonlinearity: str | None = "softmax") -> torch.Tensor:
    """Probabilities (K, z, y, x) float32 of a preprocessed case ``data`` (c, z, y, x).

    ``patch_size`` has 3 entries for a 3D network, 2 for a 2D one (then slice by slice over z);
    ``mirror_axes`` index the network's spatial axes ((0, 1) for 2D), None or () disables TTA;
    ``device`` is where the network runs (default: where its parameters are). The result lives on
    that device unless the accumulators had to fall back to the CPU; callers ``.cpu()`` as needed.
    ``precision``: auto | fp32 | mixed (toolkit.precision.resolve_inference_precision).
    ``nonlinearity``: ``softmax`` (classes), ``sigmoid`` (regions) or None for the averaged logits.
    """
    if nonlinearity not in NONLINEARITIES:
        raise ValueError(f"nonlinearity must be one of {NONLINEARITIES}, got {nonlinearity!r}")
    if isinstance(data, np.ndarray) and not data.flags.writeable:  # memory-mapped: torch wants writable
        data = np.array(data, dtype=np.float32)
    data = torch.as_tensor(data)
    if data.ndim != 4:
        raise ValueError(f"data must be (c, z, y, x), got shape {tuple(data.shape)}")
    device = torch.device(device) if device is not None else _network_device(network)
    is_2d = len(patch_size) == 2
    patch3 = (1, *patch_size) if is_2d else tuple(int(p) for p in patch_size)
    padded, crop = _pad_to_patch(data.float(), patch3)
    windows = _windows(padded.shape[1:], patch3, (1.0, step, step) if is_2d else (step,) * 3)
    gauss = gaussian_importance_map(patch_size, device).reshape(patch3)
    variants = mirror_variants(mirror_axes)
    policy = resolve_inference_precision(precision, device.type)  # once per case, not per window
    network.eval()
    with torch.inference_mode():
        if device.type == "cuda":
            try:
                padded = padded.to(device)
            except torch.cuda.OutOfMemoryError:
                torch.cuda.empty_cache()  # windows are then copied to the GPU one batch at a time
        if batch_windows is None:
            probe = padded[(slice(None), *windows[0])].unsqueeze(0).to(device)
            batch_windows = _auto_batch(network, probe[:, :, 0] if is_2d else probe, device, len(windows), policy)
        args = (network, padded, windows, gauss, is_2d, variants, num_classes, device)
        try:
            probs = _accumulate(*args, results_device=device, batch=batch_windows, policy=policy)
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
            probs = _accumulate(*args, results_device=torch.device("cpu"), batch=batch_windows, policy=policy)
    if tuple(probs.shape[1:]) != tuple(data.shape[1:]):
        probs = probs[(slice(None), *crop)].contiguous()  # copy, so the padded buffer is freed
    return apply_nonlinearity(probs, nonlinearity)
