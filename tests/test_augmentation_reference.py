"""segkit's augmentation transforms against batchgenerators 0.25 (the v1 API the paper's nnU-Net used).

Intensity transforms: same input, same drawn parameters (forced on batchgenerators' side by replaying
them into its random calls or by a degenerate range) -> same output to float32 rounding. Spatial:
the sampling coordinates equal batchgenerators' mesh -> rotate -> scale -> shift for the same angles
and scale, and linear resampling agrees inside the sample. Probabilities: binomial tests.
Intentional differences are listed in docs/augmentation.md.
"""

from __future__ import annotations

import random

import numpy as np
import pytest

bg_noise = pytest.importorskip("batchgenerators.augmentations.noise_augmentations",
                               reason="batchgenerators (the reference implementation) is not installed: "
                                      "pip install -e .[test]")
from batchgenerators.augmentations import color_augmentations as bg_color  # noqa: E402
from batchgenerators.augmentations import utils as bg_utils  # noqa: E402
from batchgenerators.augmentations.resample_augmentations import augment_linear_downsampling_scipy  # noqa: E402
from batchgenerators.augmentations.spatial_transformations import augment_mirroring  # noqa: E402
from scipy.stats import binomtest  # noqa: E402

from toolkit.training import augment  # noqa: E402
from toolkit.training.augment import DEFAULTS, Augmenter  # noqa: E402
from toolkit.training.transforms import intensity  # noqa: E402
from toolkit.training.transforms.lowres import simulate_low_resolution  # noqa: E402
from toolkit.training.transforms.spatial import (  # noqa: E402
    draw_matrix,
    rotation_matrix,
    sampling_grid,
    spatial_transform,
)

P_MIN = 1e-3


def _image(seed: int, shape=(3, 10, 12, 14)) -> np.ndarray:
    return np.random.default_rng(seed).normal(1.0, 2.0, shape).astype(np.float32)


def _replay(values):
    it = iter(values)
    return lambda *args, **kwargs: next(it)


def test_gaussian_noise_matches(monkeypatch):
    data, std = _image(0), 0.07
    field = np.random.default_rng(5).standard_normal(data.shape, dtype=np.float32)
    ours = intensity.gaussian_noise(data.copy(), std, np.random.default_rng(5))
    monkeypatch.setattr(random, "uniform", lambda a, b: std)  # the std draw (python random)
    channels = iter(field)
    monkeypatch.setattr(np.random, "normal", lambda loc, scale, size: loc + scale * next(channels).astype(float))
    ref = bg_noise.augment_gaussian_noise(data.copy(), (0.0, 0.1), p_per_channel=1, per_channel=False)
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-6)


def test_gaussian_blur_matches():
    data = _image(1)
    sigmas = [0.8, None, 1.37]
    ours = intensity.gaussian_blur(data.copy(), sigmas)
    for c, s in enumerate(sigmas):
        ref = data[c:c + 1].copy() if s is None else bg_noise.augment_gaussian_blur(data[c:c + 1].copy(), (s, s), True, 1)
        np.testing.assert_allclose(ours[c], ref[0], rtol=0, atol=1e-6)


def test_brightness_and_contrast_match(monkeypatch):
    data, factors = _image(2), [0.74, 1.21, 0.93]
    ours = intensity.brightness(data.copy(), factors)
    monkeypatch.setattr(np.random, "uniform", _replay([99.0, *factors]))  # first draw: unused shared factor
    ref = bg_color.augment_brightness_multiplicative(data.copy(), (0.7, 1.3), per_channel=True)
    np.testing.assert_allclose(ours, ref, rtol=1e-6, atol=1e-6)
    monkeypatch.undo()
    factors = [0.66, 1.45, 1.02]
    ours = intensity.contrast(data.copy(), factors)
    ref = bg_color.augment_contrast(data.copy(), _replay(factors), preserve_range=True, per_channel=True)
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-5)


@pytest.mark.parametrize("invert", [False, True])
def test_gamma_matches(monkeypatch, invert):
    data, gammas = _image(3), [0.72, 1.33, 1.0]
    ours = intensity.gamma(data.copy(), gammas, invert)
    monkeypatch.setattr(np.random, "random", lambda: 0.0)  # "below 1" branch: uniform(low, 1) ...
    monkeypatch.setattr(np.random, "uniform", _replay(gammas))  # ... replaced by our gamma
    ref = bg_color.augment_gamma(data.copy(), (0.7, 1.5), invert_image=invert, per_channel=True, retain_stats=True)
    np.testing.assert_allclose(ours, ref, rtol=0, atol=2e-5)


@pytest.mark.parametrize("ignore", [(), (0,)])
def test_low_resolution_matches(ignore):
    data, zooms = _image(4), [0.5, None, 0.77]
    ours = simulate_low_resolution(data.copy(), zooms, ignore)
    for c, z in enumerate(zooms):
        ref = data[c:c + 1].copy() if z is None else augment_linear_downsampling_scipy(
            data[c:c + 1].copy(), (z, z), True, 1, None, order_downsample=0, order_upsample=3,
            ignore_axes=ignore or None)
        np.testing.assert_allclose(ours[c], ref[0], rtol=0, atol=1e-5)


def test_mirroring_matches(monkeypatch):
    data, seg = _image(5), np.random.default_rng(5).integers(0, 3, (1, 10, 12, 14)).astype(np.int16)
    for flips in ((), (0,), (1, 2), (0, 1, 2)):
        ours = intensity.mirror(data, seg, flips)
        monkeypatch.setattr(np.random, "uniform", _replay([0.0 if a in flips else 1.0 for a in range(3)]))
        ref = augment_mirroring(data.copy(), seg.copy(), axes=(0, 1, 2))
        monkeypatch.undo()
        assert np.array_equal(ours[0], ref[0]) and np.array_equal(ours[1], ref[1])


def _bg_coords(patch, sample, angles, scale):
    coords = bg_utils.create_zero_centered_coordinate_mesh(patch)
    coords = bg_utils.rotate_coords_3d(coords, *angles) if len(patch) == 3 else bg_utils.rotate_coords_2d(coords, angles[0])
    coords = bg_utils.scale_coords(coords, scale)
    for d, s in enumerate(sample):
        coords[d] += s / 2.0 - 0.5  # augment_spatial's centre crop
    return coords


@pytest.mark.parametrize("patch, sample", [((12, 14, 16), (20, 22, 24)), ((24, 20), (34, 30))])
def test_spatial_geometry_and_linear_resampling_match(patch, sample):
    """Same angles and scale: our grid_sample grid, converted to voxel indices, is batchgenerators'
    coordinate array; images resampled linearly agree where the sample point is inside the sample
    (outside, v1's map_coordinates 'constant' and grid_sample 'zeros' pad differently); labels agree
    where the point is at least one voxel inside (the label interpolation is v1's too: indicators
    linearly, arg-max)."""
    rng = np.random.default_rng(7)
    for _ in range(4):
        angles, scale = tuple(rng.uniform(-0.6, 0.6, len(patch) if len(patch) == 3 else 1)), rng.uniform(0.7, 1.4)
        matrix = scale * rotation_matrix(angles).T
        ref = _bg_coords(patch, sample, angles, scale)
        grid = sampling_grid(matrix, sample, patch).numpy()[0][..., ::-1]  # (…, d) xyz -> index order
        ours = (grid + 1) / 2 * (np.asarray(sample) - 1)
        np.testing.assert_allclose(np.moveaxis(ours, -1, 0), ref, atol=2e-4)
        img = rng.normal(size=(1, *sample)).astype(np.float32)
        seg = np.zeros((1, *sample), np.int16)
        seg[(0, *[slice(s // 4, 3 * s // 4) for s in sample])] = 1
        seg[(0, *[slice(s // 3, s // 2) for s in sample])] = 2
        out, out_seg = spatial_transform(img, seg, matrix, patch)
        ref_img = bg_utils.interpolate_img(img[0], ref, order=1, mode="constant", cval=0.0)
        inside = np.all([(ref[d] >= 0) & (ref[d] <= s - 1) for d, s in enumerate(sample)], axis=0)
        np.testing.assert_allclose(out[0][inside], ref_img[inside], atol=1e-4)
        ref_seg = bg_utils.interpolate_img(seg[0], ref, order=1, mode="constant", cval=0, is_seg=True)
        deep = np.all([(ref[d] >= 1) & (ref[d] <= s - 2) for d, s in enumerate(sample)], axis=0)
        assert inside.mean() > 0.5 and np.array_equal(out_seg[0][deep], ref_seg[deep])


def _counts(n: int, seed: int) -> dict[str, int]:
    """How often each intensity step runs (blur and low-res: per channel) in n samples of 2 channels."""
    counts: dict[str, int] = {}

    def count(name, k=1):
        counts[name] = counts.get(name, 0) + k

    orig = (intensity.gaussian_noise, intensity.gaussian_blur, intensity.brightness, intensity.contrast,
            intensity.gamma, augment.simulate_low_resolution)
    patches = {"gaussian_noise": lambda d, std, rng: count("noise"),
               "gaussian_blur": lambda d, s: count("blur channel", sum(x is not None for x in s)),
               "brightness": lambda d, f: count("brightness"), "contrast": lambda d, f: count("contrast"),
               "gamma": lambda d, g, invert: count("gamma inverted" if invert else "gamma")}
    try:
        for name, fn in patches.items():
            setattr(intensity, name, fn)
        augment.simulate_low_resolution = lambda d, z, i=(): count("lowres channel", sum(x is not None for x in z))
        aug, rng = Augmenter((8, 8, 8)), np.random.default_rng(seed)
        data, seg = np.zeros((2, 8, 8, 8), np.float32), np.zeros((1, 8, 8, 8), np.int16)
        seg[0, 0, 0, 0] = 1
        for _ in range(n):
            _, out = aug(data, seg, None, rng)
            for a in range(3):
                count(f"mirror {a}", int(np.argwhere(out[0] == 1)[0][a] == 7))
    finally:
        (intensity.gaussian_noise, intensity.gaussian_blur, intensity.brightness, intensity.contrast,
         intensity.gamma, augment.simulate_low_resolution) = orig
    return counts


def test_probabilities_follow_the_reference_configuration():
    """Binomial tests (p > 1e-3) of each step's frequency against nnU-Net v1's batchgenerators
    configuration (the paper's values, AugmentationSettings' defaults)."""
    n, s = 4000, DEFAULTS
    counts = _counts(n, seed=11)
    expected = {"noise": (s.p_noise, n), "brightness": (s.p_brightness, n), "contrast": (s.p_contrast, n),
                "gamma": (s.p_gamma, n), "gamma inverted": (s.p_gamma_inverted, n),
                "blur channel": (s.p_blur * s.p_blur_channel, 2 * n),
                "lowres channel": (s.p_lowres * s.p_lowres_channel, 2 * n),
                **{f"mirror {a}": (s.p_mirror, n) for a in range(3)}}
    for name, (p, trials) in expected.items():
        assert binomtest(counts.get(name, 0), trials, p).pvalue > P_MIN, (name, counts.get(name, 0) / trials, p)
    rng, rotated, scaled = np.random.default_rng(12), 0, 0
    for _ in range(n):
        m = draw_matrix(rng, 3, np.pi / 6, s.p_rotation, s.p_scale, s.scale)
        if m is not None:
            sv = np.linalg.svd(m, compute_uv=False)
            scaled += not np.isclose(sv[0], 1.0)
            rotated += not np.allclose(m / sv[0], np.eye(3))
    assert binomtest(rotated, n, s.p_rotation).pvalue > P_MIN and binomtest(scaled, n, s.p_scale).pvalue > P_MIN


def test_per_channel_blur_rate_equals_batchgenerators(monkeypatch):
    """batchgenerators' own per-channel rule (p_per_channel 0.5, checked with <=) over many channels has the
    same rate as ours: both binomially consistent with 0.5."""
    calls = []
    monkeypatch.setattr(bg_noise, "gaussian_filter", lambda x, s, order: calls.append(s) or x)
    np.random.seed(3)
    random.seed(3)
    data = np.zeros((4000, 2, 2), np.float32)
    bg_noise.augment_gaussian_blur(data, (0.5, 1.5), per_channel=True, p_per_channel=0.5)
    ours = intensity.per_channel(np.random.default_rng(3), 4000, 0.5, lambda: 1.0, inclusive=True)
    assert binomtest(len(calls), 4000, 0.5).pvalue > P_MIN
    assert binomtest(sum(x is not None for x in ours), 4000, 0.5).pvalue > P_MIN
    assert all(0.5 <= s <= 1.5 for s in calls)
