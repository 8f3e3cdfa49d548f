"""Augmentation on the training device (device_augment.py) against the worker path (augment.py).

Per transform: the torch twin equals the numpy transform on equal parameters (float32 tolerance).
Whole pipeline: without noise the drawn parameters are the worker path's draw for draw, so whole
batches agree; with every step on, output statistics agree by two-sample tests (KS, binomial).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage
from scipy.stats import ks_2samp, kstest
from training_helpers import synthetic_case

from toolkit.preprocessing.storage import save_case
from toolkit.training import cascade
from toolkit.training.augment import OUTSIDE_MASK, sample_size
from toolkit.training.augment_settings import AugmentationSettings
from toolkit.training.device_augment import DeviceAugmentLoader
from toolkit.training.loader import BatchLoader, BatchSpec
from toolkit.training.sampling import PatchSpec
from toolkit.training.transforms import intensity
from toolkit.training.transforms import torch_cascade as tc
from toolkit.training.transforms import torch_intensity as ti
from toolkit.training.transforms.lowres import resize_down_up
from toolkit.training.transforms.spatial import rotation_matrix, spatial_transform
from toolkit.training.transforms.torch_spatial import warp

NAN = np.nan


def _image(seed: int, shape=(2, 3, 9, 11, 10)) -> np.ndarray:
    return np.random.default_rng(seed).normal(1.0, 2.0, shape).astype(np.float32)


@pytest.mark.parametrize("shape", [(2, 3, 9, 11, 10), (2, 3, 3, 14), (1, 2, 2, 5, 12)])
def test_blur_equals_scipy(shape):
    """Different sigmas per (sample, channel), some channels not blurred; an axis shorter than the
    kernel radius (scipy's repeated reflection)."""
    data = _image(1, shape)
    sigmas = np.array([[0.8, NAN, 1.37], [NAN, 1.5, 0.5]])[: shape[0], : shape[1]]
    ours = ti.gaussian_blur(torch.from_numpy(data.copy()), sigmas).numpy()
    for b in range(shape[0]):
        ref = intensity.gaussian_blur(data[b].copy(), [None if np.isnan(s) else s for s in sigmas[b]])
        np.testing.assert_allclose(ours[b], ref, rtol=0, atol=2e-5)


def test_brightness_contrast_gamma_equal_numpy():
    data = _image(2)
    factors = np.array([[0.74, NAN, 1.21], [NAN, NAN, NAN]])
    for name, twin, ref in (("brightness", ti.brightness, intensity.brightness),
                            ("contrast", ti.contrast, intensity.contrast)):
        ours = twin(torch.from_numpy(data.copy()), factors).numpy()
        for b in range(2):
            expected = data[b].copy()
            for c in range(3):
                if not np.isnan(factors[b, c]):
                    expected[c: c + 1] = ref(data[b, c: c + 1].copy(), [factors[b, c]])
            np.testing.assert_allclose(ours[b], expected, rtol=1e-6, atol=1e-5, err_msg=name)
    gammas = np.array([[0.72, 1.4, NAN], [NAN, NAN, NAN]])
    for invert in (False, True):
        ours = ti.gamma(torch.from_numpy(data.copy()), gammas, invert).numpy()
        expected = intensity.gamma(data[0, :2].copy(), list(gammas[0, :2]), invert)
        np.testing.assert_allclose(ours[0, :2], expected, rtol=1e-5, atol=1e-4)
        assert np.array_equal(ours[0, 2], data[0, 2]) and np.array_equal(ours[1], data[1])


@pytest.mark.parametrize("ignore", [(), (0,)])
def test_low_resolution_equals_numpy(ignore):
    data = _image(3)
    zooms = np.array([[0.5, NAN, 0.77], [NAN, 0.91, NAN]])
    ours = ti.simulate_low_resolution(torch.from_numpy(data.copy()), zooms, ignore).numpy()
    for b, c in np.ndindex(2, 3):
        expected = data[b, c] if np.isnan(zooms[b, c]) else resize_down_up(data[b, c], zooms[b, c], ignore)
        np.testing.assert_allclose(ours[b, c], expected, rtol=0, atol=1e-5)


def test_noise_is_the_seeded_field_and_standard_normal():
    data = _image(4)
    ours = ti.gaussian_noise(torch.from_numpy(data.copy()), np.array([0.05, NAN]), np.array([17, 18])).numpy()
    assert np.array_equal(ours[1], data[1])
    field = (ours[0] - data[0]) / 0.05
    assert kstest(field.ravel(), "norm").pvalue > 1e-3
    again = ti.gaussian_noise(torch.from_numpy(data.copy()), np.array([0.05, NAN]), np.array([17, 18])).numpy()
    assert np.array_equal(ours, again)


def test_mirror_and_mask_reset_equal_numpy():
    data, seg = _image(5), np.random.default_rng(5).integers(-1, 3, (2, 1, 9, 11, 10)).astype(np.int16)
    flips = np.array([[True, False, True], [False, False, False]])
    d, s = ti.mirror(torch.from_numpy(data.copy()), torch.from_numpy(seg.copy()), flips)
    ed, es = intensity.mirror(data[0], seg[0], (0, 2))
    assert np.array_equal(d[0].numpy(), ed) and np.array_equal(s[0].numpy(), es) and np.array_equal(d[1].numpy(), data[1])
    out = ti.reset_outside_mask(d.clone(), s, (0, 2)).numpy()
    outside = s.numpy()[:, 0] < 0
    assert np.all(out[:, 0][outside] == 0) and np.all(out[:, 2][outside] == 0)
    assert np.array_equal(out[:, 1], d[:, 1].numpy())


@pytest.mark.parametrize(("sample", "patch", "pad"), [((21, 23, 19), (12, 13, 11), 0), ((6, 30, 34), (20, 22), -1),
                                                     ((31, 27), (18, 16), 0)])
def test_warp_equals_spatial_transform(sample, patch, pad):
    """Batched grid_sample of image + label indicators vs the per-sample numpy path (3D, dummy 2D, 2D;
    padding label -1 for masked plans; a second seg channel: the cascade's previous stage)."""
    rng = np.random.default_rng(6)
    n, ndim = 3, len(patch)
    data = rng.normal(size=(n, 2, *sample)).astype(np.float32)
    seg = np.stack([rng.integers(pad, 3, (2, *sample)) for _ in range(n)]).astype(np.int16)
    seg[:, 1] = np.maximum(seg[:, 1], 0)
    mats = [rng.uniform(0.7, 1.4) * rotation_matrix(tuple(rng.uniform(-3, 3, 3 if ndim == 3 else 1))).T
            for _ in range(n)]
    labels = [list(range(0 if pad < 0 else 1, 3)), [1, 2]]
    d, s = warp(torch.from_numpy(data), torch.from_numpy(seg), torch.from_numpy(np.stack(mats)), patch, labels, [pad, 0])
    for b in range(n):
        ed, es = spatial_transform(data[b], seg[b], mats[b], patch, pad)
        np.testing.assert_allclose(d[b].numpy(), ed, rtol=0, atol=1e-5)
        assert np.array_equal(s[b].numpy(), es)


@pytest.mark.parametrize("op", ["dilation", "erosion", "opening", "closing"])
def test_ball_operators_equal_distance_transforms(op):
    rng = np.random.default_rng(7)
    mask = np.zeros((14, 15, 13), bool)
    mask[3:9, 4:12, 2:7] = True
    mask |= rng.uniform(size=mask.shape) < 0.05
    for radius in (1.0, 1.7, 3.2):
        ours = tc.ball_op(torch.from_numpy(mask), op, radius).numpy()
        assert np.array_equal(ours, cascade._ball_op(mask, op, radius)), (op, radius)
    full = np.ones((6, 7, 5), bool)  # no background voxel at all: scipy's corner rule
    assert np.array_equal(tc.ball_op(torch.from_numpy(full), op, 2.5).numpy(), cascade._ball_op(full, op, 2.5))


def test_component_removal_picks_the_same_component():
    """Component k of the n small ones (scipy's raster order) for u in [k/n, (k+1)/n)."""
    rng = np.random.default_rng(8)
    onehot = np.zeros((2, 16, 16, 16), np.float32)
    onehot[1] = rng.uniform(size=(16, 16, 16)) < 0.12
    onehot[1, :, :4, :] = 1  # one big component (> 15%): never removed
    labels, _ = ndimage.label(onehot[1] > 0)
    small = np.flatnonzero(np.bincount(labels.ravel())[1:] < 0.15 * 16 ** 3)
    assert len(small) > 5
    class Fixed:  # the worker path's generator, drawing component k
        def __init__(self, k: int) -> None:
            self.k = k

        def integers(self, m: int) -> int:
            assert m == len(small)
            return self.k

    for k in (0, 3, len(small) - 1):
        expected = cascade.remove_random_component(onehot, Fixed(k))
        ours = tc.remove_component(torch.from_numpy(onehot[1] > 0), (k + 0.5) / len(small), 0.15)
        assert np.array_equal(ours.numpy(), expected[1] > 0)


def _store(tmp, masked: bool = False, ignore: bool = False):
    """(preprocessed folder, previous-stage folder) of 3 synthetic cases; the "previous stage" is
    the label shifted by 2 voxels. ``ignore``: a slab of the label holds the ignore label's index 3
    (the index after the labels 0-2, as the sampler hands it to the loss)."""
    rng = np.random.default_rng(1)
    (tmp / "prev").mkdir()
    for i in range(3):
        data, seg, props = synthetic_case(rng, shape=(30, 30, 30))
        if masked:
            ball = np.sqrt(sum(g ** 2 for g in np.meshgrid(*[np.arange(30) - 15] * 3, indexing="ij"))) < 13
            data[:, ~ball] = 0
            seg[0][~ball & (seg[0] == 0)] = OUTSIDE_MASK
        if ignore:
            seg[0][:, 10:20] = 3
        save_case(tmp / "pre", f"c{i}", data, seg, props)
        np.save(tmp / "prev" / f"c{i}.npy", np.roll(seg, 2, axis=1).clip(0).astype(np.int8))
    return tmp / "pre", tmp / "prev"


def _both(folder, final, settings, batches, seeds=(5, 5), cascade=None, **kw):
    """(worker-path batches, device-path batches) of the same spec (seeds: worker's, device's)."""
    ps = PatchSpec(str(folder), ("c0", "c1", "c2"), final, sample_size(final, settings), 4, (0, 1, 2),
                   seg_pad=-1 if kw.get("mask_channels") else 0, cascade_folder=cascade)
    specs = [BatchSpec(ps, 3, True, seed, 0, settings=settings, raw=raw, **kw)
             for raw, seed in zip((False, True), seeds, strict=True)]
    with BatchLoader(specs[0], 0) as a, DeviceAugmentLoader(BatchLoader(specs[1], 0), "cpu") as b:
        return list(a.batches(0, batches)), [{k: v.numpy() for k, v in x.items()} for x in b.batches(0, batches)]


ALL_ON = {k: 0.5 for k in ("p_rotation", "p_scale", "p_blur", "p_brightness", "p_contrast", "p_lowres", "p_gamma",
                           "p_gamma_inverted")}


@pytest.mark.parametrize(("final", "kw"), [((16, 16, 16), {}), ((6, 24, 24), {}), ((20, 18), {}),
                                           ((16, 16, 16), {"mask_channels": (0,)}), ((16, 16, 16), {"cascade": True}),
                                           ((16, 16, 16), {"ignore": True})])
def test_whole_pipeline_equals_the_worker_path_without_noise(tmp_path, final, kw):
    """Without noise (and component removal) the device path draws the worker path's parameters
    draw for draw: whole batches agree (3D, dummy 2D, 2D, masked plan, cascade)."""
    folder, prev = _store(tmp_path, masked="mask_channels" in kw, ignore="ignore" in kw)
    kw = {k: v for k, v in kw.items() if k != "ignore"}
    if kw.get("cascade"):
        kw = {"cascade": str(prev)}
    settings = AugmentationSettings(p_noise=0.0, p_remove_component=0.0, **ALL_ON)
    for x, y in zip(*_both(folder, final, settings, 4, **kw), strict=True):
        assert x["data"].shape == y["data"].shape and y["seg"].dtype == np.int16
        np.testing.assert_allclose(y["data"], x["data"], rtol=0, atol=1e-4)
        assert np.array_equal(y["seg"], x["seg"])


def test_whole_pipeline_statistics_match_with_every_step(tmp_path):
    """Default probabilities plus noise: intensity histograms (KS), label volume fractions (KS) and
    how often the output differs from a plain crop (binomial) agree between the two paths."""
    folder, _ = _store(tmp_path)
    settings = AugmentationSettings(p_noise=0.5, **ALL_ON)
    worker, device = _both(folder, (16, 16, 16), settings, 20, seeds=(11, 12))  # independent draws
    sub = np.random.default_rng(0)

    def pooled(batches):
        return np.concatenate([sub.choice(b["data"].ravel(), 200) for b in batches])

    def fractions(batches, label):
        return np.concatenate([(b["seg"] == label).mean(axis=(1, 2, 3, 4)) for b in batches])

    assert ks_2samp(pooled(worker), pooled(device)).pvalue > 1e-3
    for label in (1, 2):
        assert ks_2samp(fractions(worker, label), fractions(device, label)).pvalue > 1e-3
    stds = [np.concatenate([b["data"].std(axis=(1, 2, 3, 4)) for b in x]) for x in (worker, device)]
    assert ks_2samp(*stds).pvalue > 1e-3


def test_rotation_and_scale_draws_match_the_worker_path(tmp_path):
    """The raw batches' matrices: warped fraction (binomial) and scale / rotation-angle distributions
    (KS) against the worker path's own draws."""
    from toolkit.training.augment import Augmenter
    from toolkit.training.device_loader import RawBatchMaker

    folder, _ = _store(tmp_path)
    final = (16, 16, 16)
    ps = PatchSpec(str(folder), ("c0", "c1", "c2"), final, sample_size(final), 4, (0, 1, 2))
    maker = RawBatchMaker(BatchSpec(ps, 3, True, 3, 0, raw=True))
    ours = [m for i in range(150) for m in maker.make(0, i)["warp_matrix"]]
    rng, aug = np.random.default_rng(4), Augmenter(final)
    theirs = [m for m in (aug.draw_spatial(rng) for _ in range(600)) if m is not None]
    p_warp = 1 - (1 - 0.2) * (1 - 0.2)
    assert abs(len(ours) / 600 - p_warp) <= 4.5 * np.sqrt(p_warp * (1 - p_warp) / 600)

    def scale_and_angle(ms):
        scales = np.array([np.linalg.svd(m, compute_uv=False)[0] for m in ms])
        angles = np.array([np.arccos(np.clip((np.trace(m / s) - 1) / 2, -1, 1)) for m, s in zip(ms, scales, strict=True)])
        return scales, angles

    for a, b in zip(scale_and_angle(ours), scale_and_angle(theirs), strict=True):
        assert ks_2samp(a, b).pvalue > 1e-3


def test_raw_batches_are_the_same_from_worker_processes(tmp_path):
    """The device path's default on a GPU is 2 cropping workers: their raw batches (pickled back)
    equal the in-process ones, key for key."""
    folder, _ = _store(tmp_path)
    final = (16, 16, 16)
    spec = BatchSpec(PatchSpec(str(folder), ("c0", "c1", "c2"), final, sample_size(final), 4, (0, 1, 2)),
                     3, True, 9, 0, raw=True, raw_float16=True)
    with BatchLoader(spec, 0) as a, BatchLoader(spec, 2) as b:
        pairs = list(zip(a.batches(1, 3), b.batches(1, 3), strict=True))
    for x, y in pairs:
        assert x.keys() == y.keys() and x["warp_data"].dtype == np.float16 and x["crop_seg"].dtype == np.int8
        for key in x:
            if key == "binary":
                assert x[key] == y[key]
            else:
                np.testing.assert_array_equal(x[key], y[key])
