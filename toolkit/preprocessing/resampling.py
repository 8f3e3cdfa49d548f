"""Resampling between the raw grid and the plan's spacing (docs/method.md 1.3 "Resampling").

Every interpolation here is a tensor product of 1D kernels, so it is done one axis at a time:
a cubic B-spline (order 3) costs 4 taps per axis and output voxel instead of 64 for a full 3D
kernel, which is where the speed over nnU-Net's ``skimage.transform.resize`` comes from. The
result is the same function: the 3D spline prefilter and the 3D tensor-product kernel factorise
into per-axis prefilters and kernels, and operators acting on different axes commute.

Conventions (the same as nnU-Net v2's ``default_resampling``):
- sample centres: output voxel ``i`` of ``n_out`` sits at input coordinate
  ``(i + 0.5) * n_in / n_out - 0.5`` ("align corners = false");
- new shape = ``round(old_spacing / new_spacing * old_shape)``;
- separate-z rule: when the current spacing is anisotropic (max/min > threshold, 3 by default) its
  coarsest axis, otherwise when the target spacing is anisotropic its coarsest axis, is resampled
  with nearest neighbour while the other axes use the requested order; if two axes tie for
  coarsest, no axis is treated separately.
Boundaries: linear and nearest clamp to the edge voxel; cubic uses whole-sample mirror symmetry for
both prefilter and evaluation (scipy's ``mode="mirror"``), a consistent pair, whereas nnU-Net mixes a
mirror prefilter with edge clamping. This only differs within one voxel of the border.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage


def compute_new_shape(shape: Sequence[int], spacing: Sequence[float], new_spacing: Sequence[float]) -> tuple[int, ...]:
    """Shape after resampling ``shape`` from ``spacing`` to ``new_spacing`` (at least 1 per axis)."""
    return tuple(max(1, int(round(s / n * k))) for s, n, k in zip(spacing, new_spacing, shape, strict=True))


def _coarse_axis(spacing: Sequence[float], threshold: float) -> int | None:
    spacing = np.asarray(spacing, dtype=float)
    if spacing.max() / spacing.min() <= threshold:
        return None
    coarse = np.flatnonzero(spacing == spacing.max())
    return int(coarse[0]) if len(coarse) == 1 else -1  # -1: anisotropic but two coarse axes


def separate_z_axis(spacing: Sequence[float], new_spacing: Sequence[float], threshold: float = 3.0) -> int | None:
    """The axis to resample with nearest neighbour, or None (nnU-Net's separate-z rule, see module doc)."""
    axis = _coarse_axis(spacing, threshold)
    if axis is None:
        axis = _coarse_axis(new_spacing, threshold)
    return None if axis is None or axis < 0 else axis


def axis_orders(ndim: int, order: int, separate_axis: int | None, order_z: int = 0) -> tuple[int, ...]:
    """Interpolation order per spatial axis: ``order`` everywhere except ``order_z`` on the separate axis."""
    return tuple(order_z if a == separate_axis else order for a in range(ndim))


def grid_coords(n_in: int, n_out: int, start: int = 0, stop: int | None = None) -> np.ndarray:
    """Input coordinates of output voxels ``start..stop`` when ``n_in`` voxels become ``n_out``."""
    stop = n_out if stop is None else stop
    return (np.arange(start, stop, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5


def _mirror(idx: np.ndarray, n: int) -> np.ndarray:
    if n == 1:
        return np.zeros_like(idx)
    period = 2 * (n - 1)
    idx = np.abs(idx) % period
    return np.where(idx >= n, period - idx, idx)


def kernel_taps(coords: np.ndarray, n: int, order: int) -> list[tuple[np.ndarray, np.ndarray | None]]:
    """(indices, weights) per kernel tap for 1D interpolation at ``coords`` of an axis of length ``n``."""
    if order == 0:
        # nearest-exact: floor of the un-shifted coordinate, i.e. round half up of the centre.
        return [(np.clip(np.floor(coords + 0.5), 0, n - 1).astype(np.intp), None)]
    if order == 1:
        c = np.clip(coords, 0, n - 1)
        lo = np.floor(c).astype(np.intp)
        t = c - lo
        return [(lo, 1.0 - t), (np.minimum(lo + 1, n - 1), t)]
    if order == 3:
        lo = np.floor(coords).astype(np.intp)
        t = coords - lo
        w = [(1 - t) ** 3 / 6, (3 * t**3 - 6 * t**2 + 4) / 6, (-3 * t**3 + 3 * t**2 + 3 * t + 1) / 6, t**3 / 6]
        return [(_mirror(lo + k - 1, n), w[k]) for k in range(4)]
    raise ValueError(f"interpolation order {order} is not supported (0, 1 or 3)")


def resize_axis(array: np.ndarray, axis: int, coords: np.ndarray, order: int) -> np.ndarray:
    """Interpolate ``array`` (float32) along ``axis`` at input ``coords``; other axes are untouched.

    Order 3 applies the B-spline prefilter along this axis first (the factorised 3D prefilter).
    """
    n = array.shape[axis]
    if order == 3 and n > 1:
        array = ndimage.spline_filter1d(array, order=3, axis=axis, mode="mirror", output=np.float32)
    taps = kernel_taps(coords, n, order)
    shape = [1] * array.ndim
    shape[axis] = len(coords)
    out = np.take(array, taps[0][0], axis=axis)
    if taps[0][1] is None:
        return out
    out *= taps[0][1].astype(np.float32).reshape(shape)
    buf = np.empty_like(out)
    for idx, weight in taps[1:]:
        np.take(array, idx, axis=axis, out=buf)
        buf *= weight.astype(np.float32).reshape(shape)
        out += buf
    return out


def resample_spatial(array: np.ndarray, new_shape: Sequence[int], orders: Sequence[int]) -> np.ndarray:
    """Resample a spatial float32 array (no channel axis) to ``new_shape`` with per-axis ``orders``.

    Axes that shrink go first so that later passes work on less data.
    """
    array = np.asarray(array, dtype=np.float32)
    ratios = [(new / old, a) for a, (old, new) in enumerate(zip(array.shape, new_shape, strict=True))]
    for _, axis in sorted(ratios):
        n_in, n_out = array.shape[axis], int(new_shape[axis])
        if n_in != n_out:
            array = resize_axis(array, axis, grid_coords(n_in, n_out), orders[axis])
    return array


def resample_image(
    data: np.ndarray,
    spacing: Sequence[float],
    new_spacing: Sequence[float],
    new_shape: Sequence[int] | None = None,
    order: int = 3,
    threshold: float = 3.0,
) -> np.ndarray:
    """Resample image channels ``data`` (c, z, y, x) to ``new_spacing`` (cubic, separate-z rule)."""
    new_shape = new_shape or compute_new_shape(data.shape[1:], spacing, new_spacing)
    orders = axis_orders(data.ndim - 1, order, separate_z_axis(spacing, new_spacing, threshold))
    out = np.empty((data.shape[0], *new_shape), dtype=np.float32)
    for c in range(data.shape[0]):
        out[c] = resample_spatial(data[c], new_shape, orders)
    return out


def _class_window(mask_box: list[list[int]], in_shape, out_shape) -> tuple[list[slice], list[slice]]:
    """Input crop (box + 1 voxel margin) and the output range outside which a class stays exactly 0."""
    src, dst = [], []
    for (a, b), n_in, n_out in zip(mask_box, in_shape, out_shape, strict=True):
        if n_in == n_out:  # untouched axis: output range = input crop
            src.append(slice(max(0, a - 1), min(n_in, b + 1)))
            dst.append(src[-1])
            continue
        scale = n_in / n_out
        lo = max(0, int(np.floor((a - 1.0 + 0.5) / scale - 0.5)) - 1)
        hi = min(n_out, int(np.ceil((b + 0.5) / scale - 0.5)) + 2)
        src.append(slice(max(0, a - 1), min(n_in, b + 1)))
        dst.append(slice(lo, hi))
    return src, dst


def _resample_window(mask: np.ndarray, src: list[slice], dst: list[slice], in_shape, out_shape, orders):
    """Resample the cropped ``mask[src]`` onto output voxels ``dst`` using full-grid coordinates."""
    array = mask[tuple(src)].astype(np.float32)
    for axis in range(array.ndim):
        n_in, n_out = in_shape[axis], out_shape[axis]
        if n_in == n_out and src[axis].start == dst[axis].start and src[axis].stop == dst[axis].stop:
            continue
        coords = grid_coords(n_in, n_out, dst[axis].start, dst[axis].stop) - src[axis].start
        array = resize_axis(array, axis, coords, orders[axis])
    return array


def resample_segmentation(
    seg: np.ndarray,
    new_shape: Sequence[int],
    spacing: Sequence[float],
    new_spacing: Sequence[float],
    threshold: float = 3.0,
) -> np.ndarray:
    """Resample a label map (z, y, x) of label values: one-hot, linear per class, argmax.

    Class by class with a running maximum, each class only inside its own bounding box: linear
    interpolation of a one-hot map is zero away from the class, and background equals one minus the
    sum of the foreground channels, so it needs no pass of its own. Memory: a few output-sized arrays.
    Ties go to the lower label value, as argmax over sorted channels would.
    """
    from toolkit.preprocessing.cropping import bbox_of

    in_shape, new_shape = seg.shape, tuple(int(s) for s in new_shape)
    if in_shape == new_shape:
        return seg.copy()
    orders = axis_orders(seg.ndim, 1, separate_z_axis(spacing, new_spacing, threshold))
    best = np.zeros(new_shape, dtype=np.float32)
    fg_sum = np.zeros(new_shape, dtype=np.float32)
    result = np.zeros(new_shape, dtype=seg.dtype)
    for value in (int(v) for v in np.unique(seg) if v != 0):
        mask = seg == value
        src, dst = _class_window(bbox_of(mask), in_shape, new_shape)
        prob = _resample_window(mask, src, dst, in_shape, new_shape, orders)
        win = tuple(dst)
        better = prob > best[win]
        best[win] = np.where(better, prob, best[win])
        result[win] = np.where(better, value, result[win])
        fg_sum[win] += prob
    result[(1.0 - fg_sum) >= best] = 0
    return result
