"""Resampling rules and the separable resampler against scipy's reference interpolation."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from toolkit.preprocessing.resampling import (
    axis_orders,
    compute_new_shape,
    resample_image,
    resample_segmentation,
    resample_spatial,
    separate_z_axis,
)


def _centres(n_in: int, n_out: int) -> np.ndarray:
    """The documented convention, written out here: output voxel i sits at input (i + 0.5) * n_in / n_out - 0.5."""
    return (np.arange(n_out) + 0.5) * n_in / n_out - 0.5


def _reference(array: np.ndarray, new_shape, order: int) -> np.ndarray:
    """scipy's own 3D zoom in pixel-centre (grid) mode: no coordinate helper of the module is used."""
    mode = "mirror" if order == 3 else "nearest"
    out = ndimage.zoom(array.astype(np.float64), np.divide(new_shape, array.shape), order=order, mode=mode,
                       grid_mode=True)
    assert out.shape == tuple(new_shape)
    return out


@pytest.mark.parametrize("order", [1, 3])
@pytest.mark.parametrize("new_shape", [(30, 11, 19), (9, 40, 7)])
def test_separable_equals_full_3d_interpolation(order, new_shape):
    rng = np.random.default_rng(0)
    array = rng.normal(size=(17, 23, 19)).astype(np.float32)
    out = resample_spatial(array, new_shape, (order,) * 3)
    assert out.shape == new_shape and out.dtype == np.float32
    np.testing.assert_allclose(out, _reference(array, new_shape, order), atol=1e-5)


def test_nearest_axis_copies_slices():
    array = np.arange(4 * 3 * 3, dtype=np.float32).reshape(4, 3, 3)
    out = resample_spatial(array, (8, 3, 3), (0, 1, 1))
    np.testing.assert_array_equal(out[::2], array)
    np.testing.assert_array_equal(out[1::2], array)


def test_reference_zoom_uses_the_documented_centres():
    """The scipy reference above samples at _centres: a ramp resampled linearly gives the centres back."""
    ramp = np.arange(7, dtype=np.float64)
    np.testing.assert_allclose(ndimage.zoom(ramp, 12 / 7, order=1, mode="nearest", grid_mode=True),
                               np.clip(_centres(7, 12), 0, 6), atol=1e-12)
    np.testing.assert_allclose(_centres(4, 2), [0.5, 2.5])  # 4 -> 2: each output between two inputs


def test_compute_new_shape_rounds_like_nnunet():
    assert compute_new_shape((10, 100, 101), (3.0, 0.5, 0.5), (1.5, 1.0, 1.0)) == (20, 50, 50)
    assert compute_new_shape((1, 5, 5), (1.0, 1.0, 1.0), (5.0, 1.0, 1.0)) == (1, 5, 5)


@pytest.mark.parametrize(
    "spacing, new_spacing, expected",
    [
        ((1.0, 1.0, 1.0), (1.5, 1.5, 1.5), None),           # isotropic both
        ((5.0, 1.0, 1.0), (2.0, 1.0, 1.0), 0),              # current anisotropic: its coarse axis
        ((3.0, 1.0, 1.0), (3.0, 1.0, 1.0), None),           # ratio exactly 3 is not > 3
        ((1.0, 1.0, 1.0), (1.0, 0.2, 1.0), None),           # target anisotropic but z and x tie
        ((0.8, 0.8, 4.0), (0.8, 0.8, 0.8), 2),              # coarse axis may be x
        ((4.0, 4.0, 1.0), (1.0, 1.0, 1.0), None),           # two coarse axes: no separate axis
        ((1.0, 1.0, 1.0), (4.0, 1.0, 1.0), 0),              # only the target is anisotropic
    ],
)
def test_separate_z_rule(spacing, new_spacing, expected):
    assert separate_z_axis(spacing, new_spacing) == expected


def test_axis_orders():
    assert axis_orders(3, 3, 0) == (0, 3, 3)
    assert axis_orders(3, 1, None) == (1, 1, 1)


def test_image_resampling_uses_nearest_along_coarse_axis():
    rng = np.random.default_rng(1)
    data = rng.normal(size=(2, 6, 16, 16)).astype(np.float32)
    out = resample_image(data, (5.0, 1.0, 1.0), (2.5, 1.0, 1.0))
    assert out.shape == (2, 12, 16, 16)
    # z is nearest: every output slice equals an input slice exactly (in-plane untouched)
    np.testing.assert_array_equal(out[:, ::2], data)
    np.testing.assert_array_equal(out[:, 1::2], data)


def _brute_force_seg(seg, new_shape, labels, orders):
    coords = np.meshgrid(
        *[np.clip(_centres(n, m), 0, n - 1) if o == 1 else np.clip(np.floor(_centres(n, m) + 0.5), 0, n - 1)
          for n, m, o in zip(seg.shape, new_shape, orders, strict=True)], indexing="ij")
    probs = np.stack([ndimage.map_coordinates((seg == v).astype(np.float64), coords, order=1, mode="nearest")
                      for v in labels])
    return np.asarray(labels)[probs.argmax(0)]


@pytest.mark.parametrize("spacing, new_spacing, orders", [
    ((1.0, 1.0, 1.0), (0.6, 1.7, 0.7), (1, 1, 1)),  # target 1.7 / 0.6 = 2.8 <= 3: linear everywhere
    ((4.0, 1.0, 1.0), (2.0, 0.5, 0.8), (0, 1, 1)),  # current 4 / 1 > 3: z nearest, in-plane linear
])
def test_segmentation_one_hot_linear_argmax(spacing, new_spacing, orders):
    seg = np.zeros((20, 30, 30), np.int16)
    seg[5:15, 5:20, 8:25] = 1
    seg[8:12, 10:15, 10:14] = 2
    seg[0:3, 0:4, :] = 5
    new_shape = compute_new_shape(seg.shape, spacing, new_spacing)
    out = resample_segmentation(seg, new_shape, spacing, new_spacing)
    ref = _brute_force_seg(seg, new_shape, [0, 1, 2, 5], orders)
    assert out.shape == tuple(new_shape) and out.dtype == seg.dtype
    assert (out == ref).mean() > 0.999  # only exact float ties may break differently
    assert set(np.unique(out)) == {0, 1, 2, 5}


def test_segmentation_same_shape_is_identity():
    seg = np.random.default_rng(0).integers(0, 3, (5, 6, 7)).astype(np.int16)
    np.testing.assert_array_equal(resample_segmentation(seg, seg.shape, (1, 1, 1), (1, 1, 1)), seg)
