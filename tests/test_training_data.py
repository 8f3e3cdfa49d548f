"""Patch sampling (oversampling rule, padding), augmentation alignment, determinism, cascade masks."""

from __future__ import annotations

import numpy as np
import pytest
from training_helpers import synthetic_case

from toolkit.preprocessing.storage import save_case
from toolkit.training.augment import DEFAULTS, Augmenter, sample_size, spatial_plan
from toolkit.training.augment_settings import AugmentationSettings
from toolkit.training.cascade import previous_stage_to_data, random_binary_operator, remove_random_component
from toolkit.training.loader import BatchLoader, BatchSpec
from toolkit.training.sampling import PatchSampler, PatchSpec, bbox_bounds, crop_with_pad, num_forced
from toolkit.training.transforms import intensity
from toolkit.training.transforms.intensity import draw_flips, mirror
from toolkit.training.transforms.lowres import resize_down_up
from toolkit.training.transforms.spatial import draw_matrix, rotation_matrix, spatial_transform


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pre")
    rng = np.random.default_rng(1)
    for i in range(4):
        save_case(folder, f"c{i}", *synthetic_case(rng, shape=(40, 40, 40)))
    data = rng.normal(size=(1, 40, 40, 40)).astype(np.float32)  # a case without foreground
    save_case(folder, "empty", data, np.zeros_like(data, dtype=np.int16), {"class_locations": {"1": [], "2": []}})
    return folder


def _patch_spec(folder, final=(16, 16, 16), sample=None, bs=3, cases=("c0", "c1", "c2", "c3"), **kw):
    return PatchSpec(str(folder), tuple(cases), final, sample or final, bs, (0, 1, 2), **kw)


def test_num_forced_rule():
    assert [num_forced(b) for b in (1, 2, 3, 4, 6, 12)] == [1, 1, 1, 1, 2, 4]
    assert num_forced(2, 0.0) == 0


def test_oversampling_ratio_over_many_batches(store):
    sampler = PatchSampler(_patch_spec(store, bs=3))
    rng = np.random.default_rng(0)
    centre_fg = np.zeros(3)
    n = 300
    for _ in range(n):
        seg = sampler.sample(rng)["seg"]
        centre_fg += seg[:, 0, 8, 8, 8] > 0  # forced patches are centred on a foreground voxel
    assert centre_fg[2] == n  # the last round(3 * 0.33) = 1 sample of every batch
    assert centre_fg[:2].max() < 0.5 * n  # random patches: foreground centre only by chance


def test_case_without_foreground_falls_back_to_random(store):
    sampler = PatchSampler(_patch_spec(store, bs=2, cases=("empty",)))
    batch = sampler.sample(np.random.default_rng(0))
    assert batch["seg"].max() == 0 and batch["data"].shape == (2, 1, 16, 16, 16)


def test_bbox_allows_final_patch_centre_everywhere_and_pads():
    lbs, ubs = bbox_bounds((10, 40), final=(8, 16), sample=(12, 24))
    assert lbs.tolist() == [-2, -4] and ubs.tolist() == [0, 20]
    arr = np.arange(1 * 4 * 4).reshape(1, 4, 4).astype(np.float32) + 1
    out = crop_with_pad(arr, np.array([-1, 2]), (3, 4))
    assert out.shape == (1, 3, 4)
    assert np.all(out[0, 0] == 0) and np.all(out[0, :, 2:] == 0)
    assert out[0, 1:, :2].tolist() == [[3, 4], [7, 8]]


def test_2d_sampling_takes_slices(store):
    sampler = PatchSampler(_patch_spec(store, final=(16, 16), bs=2))
    batch = sampler.sample(np.random.default_rng(0))
    assert batch["data"].shape == (2, 1, 16, 16)
    assert batch["seg"][1, 0, 8, 8] > 0


def test_spatial_rules():
    assert spatial_plan((40, 56, 40)) == spatial_plan((40, 56, 40))
    assert not spatial_plan((40, 56, 40)).dummy_2d
    assert spatial_plan((40, 56, 40)).rotation == pytest.approx(np.pi / 6)
    assert spatial_plan((10, 64, 64)).dummy_2d and spatial_plan((10, 64, 64)).rotation == pytest.approx(np.pi)
    assert spatial_plan((64, 64)).rotation == pytest.approx(np.pi)
    assert spatial_plan((32, 96)).rotation == pytest.approx(np.pi / 12)
    big = sample_size((40, 56, 40))
    assert all(b > f for b, f in zip(big, (40, 56, 40), strict=True))
    assert sample_size((10, 64, 64))[0] == 10  # dummy 2D: z is not enlarged


def _random_boxes(rng, shape, n=4):
    seg = np.zeros((1, *shape), np.int16)
    for _ in range(n):
        lo = [rng.integers(0, s - s // 3) for s in shape]
        seg[(0, *[slice(a, a + s // 4 + 2) for a, s in zip(lo, shape, strict=True)])] = 1
    return seg


@pytest.mark.parametrize("final", [(24, 24, 24), (8, 32, 32), (32, 32)])
def test_augmentation_keeps_image_and_label_aligned(final):
    """The label itself as the image: after rotation/scaling/mirroring both must still coincide."""
    rng = np.random.default_rng(3)
    aug = Augmenter(final)
    for _ in range(4):
        seg = _random_boxes(rng, aug.sample)
        scale = rng.uniform(0.7, 1.4)
        matrix = scale * rotation_matrix(tuple(rng.uniform(-aug.plan.rotation, aug.plan.rotation, aug.num_angles))).T
        data, lab = spatial_transform(seg.astype(np.float32), seg, matrix, aug.inplane)
        data, lab = mirror(data, lab, draw_flips(rng, aug.plan.mirror_axes, 0.5))
        assert data.shape == (1, *final) and lab.shape == (1, *final)
        img, lab = data > 0.5, lab > 0
        dice = 2 * (img & lab).sum() / (img.sum() + lab.sum())
        assert lab.sum() > 0 and dice > 0.95


def test_rotation_maps_a_known_point():
    """Output voxel i samples A (i - c_P) + c_S: a dot at c_S + d lands at c_P + R d."""
    sample, patch = (41, 41), (21, 21)
    img = np.zeros((1, *sample), np.float32)
    img[0, 20 + 6, 20] = 1.0  # 6 voxels down from the sample centre
    out, _ = spatial_transform(img, np.zeros((1, *sample), np.int16), rotation_matrix((np.pi / 2,)).T, patch)
    assert np.unravel_index(out[0].argmax(), patch) == (10, 10 + 6)  # R(90 deg) (6, 0) = (0, 6)
    assert out[0].max() == pytest.approx(1.0, abs=1e-5)
    rng = np.random.default_rng(0)
    sample3, patch3 = (31, 33, 35), (15, 17, 19)
    angles, scale, d = tuple(rng.uniform(-0.5, 0.5, 3)), 1.25, np.array([4.0, -3.0, 2.0])
    img3 = np.zeros((1, *sample3), np.float32)
    img3[(0, *(np.array([15, 16, 17]) + d).astype(int))] = 1.0
    out3, _ = spatial_transform(img3, np.zeros((1, *sample3), np.int16),
                                scale * rotation_matrix(angles).T, patch3)
    expected = np.array([7, 8, 9]) + rotation_matrix(angles) @ d / scale
    centroid = (np.argwhere(out3[0] > 0) * out3[0][out3[0] > 0][:, None]).sum(0) / out3[0].sum()
    assert np.allclose(centroid, expected, atol=0.25)


def test_identity_when_nothing_is_drawn():
    """All probabilities 0: the output is the centre crop of the sample, bit for bit; so is an
    identity matrix (no rotation, scale 1) when the crop offset is whole."""
    off = AugmentationSettings(**{name: 0.0 for name in (
        "p_rotation", "p_scale", "p_noise", "p_blur", "p_brightness", "p_contrast", "p_lowres", "p_gamma",
        "p_gamma_inverted", "p_mirror")})
    rng = np.random.default_rng(0)
    for final in ((24, 24, 24), (8, 32, 32), (32, 32)):
        aug = Augmenter(final, settings=off)
        data = rng.normal(size=(2, *aug.sample)).astype(np.float32)
        seg = rng.integers(0, 3, (1, *aug.sample)).astype(np.int16)
        matrix = aug.draw_spatial(rng)
        assert matrix is None
        offset, size = aug.read_window(matrix)
        box = (slice(None), *[slice(o, o + s) for o, s in zip(offset, size, strict=True)])
        out, out_seg = aug(data, seg, matrix, rng)
        assert np.array_equal(out, data[box]) and np.array_equal(out_seg, seg[box])
    data = rng.normal(size=(1, 30, 34, 28)).astype(np.float32)
    seg = rng.integers(0, 3, (1, 30, 34, 28)).astype(np.int16)
    out, out_seg = spatial_transform(data, seg, np.eye(3), (20, 24, 18))
    assert np.allclose(out, data[:, 5:25, 5:29, 5:23], atol=1e-5)
    assert np.array_equal(out_seg, seg[:, 5:25, 5:29, 5:23])


def _binomial_ok(hits: int, n: int, p: float) -> bool:
    return abs(hits / n - p) <= 4.5 * np.sqrt(p * (1 - p) / n)


def test_spatial_draws_match_method():
    rng = np.random.default_rng(0)
    n, rotated, scaled = 4000, 0, 0
    for _ in range(n):
        m = draw_matrix(rng, 3, np.pi / 6, DEFAULTS.p_rotation, DEFAULTS.p_scale, DEFAULTS.scale)
        if m is None:
            continue
        sv = np.linalg.svd(m, compute_uv=False)
        assert np.allclose(sv, sv[0]) and 0.7 <= sv[0] <= 1.4  # isotropic scale in U(0.7, 1.4)
        scaled += not np.isclose(sv[0], 1.0)
        rot = m / sv[0]
        rotated += not np.allclose(rot, np.eye(3))
        angle = np.arccos(np.clip((np.trace(rot) - 1) / 2, -1, 1))
        assert angle <= np.sqrt(3) * np.pi / 6 + 1e-9  # three angles, each within 30 degrees
    assert _binomial_ok(rotated, n, 0.2) and _binomial_ok(scaled, n, 0.2)


def test_intensity_probabilities_match_method(monkeypatch):
    """Record which steps run (per sample; blur and low-res per channel) over many draws.

    The Augmenter's own code draws every probability and parameter (low-res: which channels, and their
    zooms); only the application of each step is replaced by a counter (the applications are tested
    against independent references below and in tests/test_augmentation_reference.py).
    """
    from toolkit.training import augment

    calls: dict[str, int] = {}
    drawn_zooms: list[float] = []

    def count(name, k=1):
        calls[name] = calls.get(name, 0) + k

    monkeypatch.setattr(intensity, "gaussian_noise", lambda d, std, rng: count("gaussian_noise"))
    monkeypatch.setattr(intensity, "brightness", lambda d, f: count("brightness"))
    monkeypatch.setattr(intensity, "contrast", lambda d, f: count("contrast"))
    monkeypatch.setattr(intensity, "gamma", lambda d, g, invert: count(f"gamma{invert}"))
    monkeypatch.setattr(intensity, "gaussian_filter", lambda d, s, order: count("blurred channel") or d)

    def count_lowres(data, zooms, ignore_axes=()):
        count("lowres")
        count("lowres channel", sum(z is not None for z in zooms))
        drawn_zooms.extend(z for z in zooms if z is not None)
        assert all(z is None or 0.5 <= z <= 1.0 for z in zooms)

    monkeypatch.setattr(augment, "simulate_low_resolution", count_lowres)
    aug = Augmenter((8, 8, 8))
    rng = np.random.default_rng(1)
    n, flips = 6000, np.zeros(3)
    data, seg = np.zeros((2, 8, 8, 8), np.float32), np.zeros((1, 8, 8, 8), np.int16)
    seg[0, 0, 0, 0] = 1
    for _ in range(n):
        _, out = aug(data, seg, None, rng)
        flips += np.argwhere(out[0] == 1)[0] == 7  # where the corner voxel went: which axes flipped
    expected = {"gaussian_noise": 0.15, "brightness": 0.15, "contrast": 0.15, "gammaFalse": 0.15,
                "gammaTrue": 0.15, "lowres": 0.25}
    for name, p in expected.items():
        assert _binomial_ok(calls.get(name, 0), n, p), (name, calls.get(name, 0) / n)
    # per channel (2 channels): blur 0.2 x 0.5 per channel, low-res 0.25 x 0.5 per channel
    assert _binomial_ok(calls.get("blurred channel", 0), 2 * n, 0.2 * 0.5)
    assert _binomial_ok(calls.get("lowres channel", 0), 2 * n, 0.25 * 0.5)
    # zoom U(0.5, 1) (docs/method.md 1.2: downsample by a factor U(1, 2)): mean 0.75, std 0.5 / sqrt(12)
    assert min(drawn_zooms) >= 0.5 and max(drawn_zooms) <= 1.0
    assert abs(np.mean(drawn_zooms) - 0.75) < 4 * (0.5 / np.sqrt(12)) / np.sqrt(len(drawn_zooms))
    assert all(_binomial_ok(int(f), n, 0.5) for f in flips)


def _down_up_reference(channel: np.ndarray, zoom: float, ignore_axes=()) -> np.ndarray:
    """The documented operation done in one go with scipy's 3D zoom (skimage ``resize`` conventions:
    pixel-centre grid, edge mode): order 0 to round(shape * zoom), order 3 back, clipped to the
    downsampled range. No helper of the module is used."""
    from scipy import ndimage

    shape = channel.shape
    small_shape = [n if a in ignore_axes else int(np.round(n * zoom)) for a, n in enumerate(shape)]
    small = ndimage.zoom(channel.astype(np.float64), np.divide(small_shape, shape), order=0, mode="nearest",
                         grid_mode=True)
    assert list(small.shape) == small_shape
    up = ndimage.zoom(small, np.divide(shape, small_shape), order=3, mode="nearest", grid_mode=True)
    assert up.shape == shape
    return np.clip(up, small.min(), small.max())


def test_low_resolution_hand_computed_ramp():
    """9 -> 3 voxels (zoom 1/3): nearest keeps voxels 1, 4, 7 (centres (i + 0.5) * 3 - 0.5); the cubic
    spline back to 9 interpolates them, so output voxels 1, 4, 7 (centres (j + 0.5) / 3 - 0.5 = 0, 1, 2)
    are exactly 1, 4, 7; everything stays within [1, 7]; the ignored axes are not resampled."""
    ramp = np.broadcast_to(np.arange(9, dtype=np.float32)[:, None, None], (9, 5, 6)).copy()
    out = resize_down_up(ramp, 1 / 3, ignore_axes=(1, 2))
    assert out.shape == ramp.shape
    np.testing.assert_allclose(out[[1, 4, 7]], np.broadcast_to(np.array([1.0, 4.0, 7.0])[:, None, None],
                                                                (3, 5, 6)), atol=1e-5)
    assert out.min() >= 1.0 and out.max() <= 7.0
    assert np.all(np.diff(out[:, 0, 0]) >= -1e-6)  # a monotone ramp stays monotone
    assert np.array_equal(out, np.broadcast_to(out[:, :1, :1], out.shape))  # constant along ignored axes


def test_low_resolution_loses_the_highest_frequency_and_keeps_shape():
    """A checkerboard of period 2 voxels at zoom 0.5: nearest keeps every other voxel per axis, all of the
    same colour, so the result is flat; at zoom 1 nothing changes."""
    board = (np.indices((8, 8, 8)).sum(0) % 2).astype(np.float32)
    half = resize_down_up(board, 0.5)
    assert half.shape == board.shape
    assert np.ptp(half) == 0 and half.flat[0] in (0.0, 1.0)
    assert np.array_equal(resize_down_up(board, 1.0), board)
    # a checkerboard along the ignored axis only (constant in-plane) is untouched
    stripes = np.broadcast_to((np.arange(8) % 2).astype(np.float32)[:, None, None], (8, 10, 10)).copy()
    np.testing.assert_allclose(resize_down_up(stripes, 0.5, ignore_axes=(0,)), stripes, atol=1e-6)


@pytest.mark.parametrize(("zoom", "ignore"), [(0.5, ()), (0.73, ()), (0.61, (0,)), (0.9, (2,))])
def test_low_resolution_equals_scipy_3d_zoom(zoom, ignore):
    channel = np.random.default_rng(3).normal(size=(11, 17, 14)).astype(np.float32)
    out = resize_down_up(channel, zoom, ignore)
    assert out.shape == channel.shape and out.dtype == np.float32
    np.testing.assert_allclose(out, _down_up_reference(channel, zoom, ignore), atol=1e-4)


def test_intensity_steps_keep_ranges_and_stats():
    rng = np.random.default_rng(2)
    data = rng.normal(3, 2, (3, 12, 12, 12)).astype(np.float32)
    out = intensity.contrast(data.copy(), list(rng.uniform(0.65, 1.5, 3)))
    assert np.all(out.min(axis=(1, 2, 3)) >= data.min(axis=(1, 2, 3)) - 1e-5)
    assert np.all(out.max(axis=(1, 2, 3)) <= data.max(axis=(1, 2, 3)) + 1e-5)
    factors = list(rng.uniform(0.7, 1.3, 50))
    ratio = intensity.brightness(np.ones((50, 2, 2), np.float32), factors)[:, 0, 0]
    assert np.allclose(ratio, factors)  # one factor per channel
    for invert in (False, True):
        g = intensity.gamma(data.copy(), list(rng.uniform(0.7, 1.5, 3)), invert)
        assert np.allclose(g.mean(axis=(1, 2, 3)), data.mean(axis=(1, 2, 3)), atol=1e-3)
        assert np.allclose(g.std(axis=(1, 2, 3)), data.std(axis=(1, 2, 3)), rtol=1e-3)
    small = resize_down_up(data[0], 0.5)
    assert small.shape == data[0].shape and small.min() >= data[0].min() and small.max() <= data[0].max()
    assert np.array_equal(resize_down_up(data[0], 1.0), data[0])


def test_full_pipeline_shapes_and_labels():
    final = (24, 24, 24)
    aug = Augmenter(final)
    rng = np.random.default_rng(1)
    for _ in range(20):
        data = rng.normal(size=(1, *aug.sample)).astype(np.float32)
        seg = rng.integers(0, 3, (1, *aug.sample)).astype(np.int16)
        matrix = aug.draw_spatial(rng)
        out, out_seg = aug(data, seg, matrix, rng)
        assert out.shape == (1, *final) and out.dtype == np.float32 and np.isfinite(out).all()
        assert out_seg.shape == (1, *final) and set(np.unique(out_seg)) == {0, 1, 2}  # no new, none lost


def test_window_read_equals_centre_crop_of_the_sample(store):
    final = (16, 16, 16)
    spec = _patch_spec(store, final, sample_size(final), 1)
    sampler = PatchSampler(spec)
    offset, size = Augmenter(final).read_window(None)
    for force in (False, True):
        full = sampler.sample_one(np.random.default_rng(5), force)
        part = sampler.sample_one(np.random.default_rng(5), force, (offset, size))
        box = (slice(None), *[slice(o, o + s) for o, s in zip(offset, size, strict=True)])
        assert np.array_equal(part["data"], full["data"][box]) and np.array_equal(part["seg"], full["seg"][box])


def _batches(store, workers: int, seed: int, cases=("c0", "c1", "c2", "c3"), settings=DEFAULTS, **kw):
    final = (16, 16, 16)
    spec = BatchSpec(_patch_spec(store, final, sample_size(final), 2, cases, **kw), 3, True, seed, 0,
                     settings=settings)
    with BatchLoader(spec, workers) as loader:
        return list(loader.batches(epoch=1, count=3))


def test_batches_are_reproducible_and_independent_of_workers(store):
    a, b = _batches(store, 0, seed=7), _batches(store, 2, seed=7)
    c = _batches(store, 0, seed=8)
    for x, y in zip(a, b, strict=True):
        assert np.array_equal(x["data"], y["data"]) and np.array_equal(x["seg"], y["seg"])
    assert not np.array_equal(a[0]["data"], c[0]["data"])


def test_cascade_binary_operator_and_component_removal():
    rng = np.random.default_rng(0)
    onehot = np.zeros((3, 20, 20, 20), np.float32)
    onehot[1, 5:12, 5:12, 5:12] = 1
    onehot[2, 15:17, 15:17, 15:17] = 1
    onehot[0] = 1 - onehot[1:].max(0)
    changed = random_binary_operator(onehot, rng)
    assert not np.array_equal(changed, onehot)
    assert changed[1:].sum(0).max() <= 1  # no voxel in two foreground channels
    removed = remove_random_component(onehot, rng)  # both components are < 15% of the patch
    assert removed[1:].sum() == 0
    big = onehot.copy()
    big[1, :, :10] = 1  # 50% of the patch: never removed
    assert remove_random_component(big, rng)[1].sum() == big[1].sum()


def test_previous_stage_becomes_one_hot_channels():
    prev = np.zeros((1, 12, 12, 12), np.int16)
    prev[0, 3:8, 3:8, 3:8] = 2
    rng = np.random.default_rng(0)
    for _ in range(5):
        out = previous_stage_to_data(np.zeros((1, 12, 12, 12), np.float32), prev, 3, DEFAULTS, rng)
        assert out.shape == (4, 12, 12, 12) and np.allclose(out[1:].sum(0), 1.0)
    plain = previous_stage_to_data(np.zeros((1, 12, 12, 12), np.float32), prev, 3, None, rng)
    assert np.array_equal(plain[3] > 0, prev[0] == 2)


def test_cascade_loader_adds_previous_stage_channels(store, tmp_path):
    # every sample rotated, the previous stage not corrupted
    settings = AugmentationSettings(p_rotation=1.0, p_binary_operator=0.0, p_remove_component=0.0)
    for i in range(4):
        seg = np.load(store / f"c{i}_seg.npy")
        np.save(tmp_path / f"c{i}.npy", seg.astype(np.int8))  # the "previous stage" = the truth
    batches = _batches(store, 0, seed=1, settings=settings, cascade_folder=str(tmp_path))
    assert batches[0]["data"].shape == (2, 1 + 3, 16, 16, 16) and batches[0]["seg"].shape == (2, 1, 16, 16, 16)
    # the previous stage (here: the truth, uncorrupted) moved with the label through rotation and mirroring
    for b in batches:
        assert np.array_equal(b["data"][:, 1:].argmax(1), b["seg"][:, 0])
        assert b["seg"].max() > 0
