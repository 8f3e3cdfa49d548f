"""Low-resolution simulation (docs/method.md 1.2, step 6): nearest downsample by U(1, 2), cubic upsample back.

Exactly batchgenerators v1's ``augment_linear_downsampling_scipy`` as the previous loader configured
it (skimage ``resize``: order 0 down, order 3 up, mode 'edge', no anti-aliasing, output clipped to the
downsampled range), computed faster: both resizes are separable and linear along each axis, so each
axis' cubic upsampling is a small dense matrix (scipy's own ``zoom`` applied to unit vectors, cached
per size pair) and the nearest downsampling an index list; the 3D resize is three small matrix
products instead of a spline prefilter plus a 3D spline evaluation. Per channel with p 0.5, each with
its own zoom U(0.5, 1) shared by all axes; ``ignore_axes`` (z for dummy 2D) stay untouched.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy import ndimage


@lru_cache(maxsize=512)
def nearest_indices(n_in: int, n_out: int) -> np.ndarray:
    """Source index of each output voxel of an order-0 resize (scipy zoom, grid mode, edge)."""
    src = np.arange(n_in, dtype=float)
    return ndimage.zoom(src, n_out / n_in, order=0, mode="nearest", grid_mode=True).round().astype(np.intp)


@lru_cache(maxsize=512)
def cubic_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) matrix of an order-3 resize (scipy zoom, grid mode, edge), float32."""
    eye = np.eye(n_in)
    cols = [ndimage.zoom(eye[j], n_out / n_in, order=3, mode="nearest", grid_mode=True) for j in range(n_in)]
    return np.stack(cols, axis=1).astype(np.float32)


def _along(matrix: np.ndarray, volume: np.ndarray, axis: int) -> np.ndarray:
    """``matrix`` applied along ``axis``. einsum's own loop, not BLAS: BLAS threads stall for tens of
    milliseconds on such small products when the cores are busy (in-process loading)."""
    letters = "abcdefgh"[: volume.ndim]
    out = letters.replace(letters[axis], "z")
    return np.einsum(f"z{letters[axis]},{letters}->{out}", matrix, volume)


def resize_down_up(channel: np.ndarray, zoom: float, ignore_axes: tuple[int, ...] = ()) -> np.ndarray:
    """Nearest-downsample ``channel`` to ``round(shape * zoom)`` and cubic-upsample it back."""
    shape = channel.shape
    small_shape = [n if a in ignore_axes else int(np.round(n * zoom)) for a, n in enumerate(shape)]
    index = tuple(slice(None) if a in ignore_axes or m == n else nearest_indices(n, m)
                  for a, (n, m) in enumerate(zip(shape, small_shape, strict=True)))
    small = channel[np.ix_(*[np.arange(n) if isinstance(i, slice) else i for n, i in zip(shape, index, strict=True)])]
    out = small.astype(np.float32)
    for axis, (n, m) in enumerate(zip(shape, small_shape, strict=True)):
        if m != n:
            out = _along(cubic_matrix(m, n), out, axis)
    return np.clip(out, small.min(), small.max())


def simulate_low_resolution(data: np.ndarray, zooms: list[float | None],
                            ignore_axes: tuple[int, ...] = ()) -> np.ndarray:
    """Channel c: :func:`resize_down_up` by the zoom ``zooms[c]`` (None: left alone)."""
    for c, zoom in enumerate(zooms):
        if zoom is not None:
            data[c] = resize_down_up(data[c], zoom, ignore_axes)
    return data
