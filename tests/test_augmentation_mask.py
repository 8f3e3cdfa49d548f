"""Channels normalised inside the non-zero mask are 0 outside it after augmentation (nnU-Net's
MaskImageTransform): the -1 marker from preprocessing, the sampler's -1 padding, the reset itself."""

from __future__ import annotations

import json

import numpy as np
from training_helpers import make_work, synthetic_case

from toolkit.preprocessing.storage import save_case
from toolkit.training.augment import OUTSIDE_MASK, Augmenter
from toolkit.training.augment_settings import AugmentationSettings
from toolkit.training.loader import BatchLoader, BatchSpec
from toolkit.training.sampling import PatchSampler, PatchSpec
from toolkit.training.transforms.spatial import rotation_matrix, spatial_transform
from toolkit.workdir import WorkDir


def _masked_sample(rng, shape):
    """Two channels, non-zero only inside a ball (outside: 0, label -1), label 1 in a smaller ball."""
    grids = np.meshgrid(*[np.arange(n) - n / 2 + rng.uniform(-3, 3) for n in shape], indexing="ij")
    r = np.sqrt(sum(g ** 2 for g in grids))
    inside = r < min(shape) * 0.4
    data = (rng.normal(0, 1, (2, *shape)) * inside).astype(np.float32)
    seg = np.where(inside, (r < min(shape) * 0.15).astype(np.int16), np.int16(OUTSIDE_MASK))[None]
    return data, seg


def test_preprocessing_marker_is_the_augmentation_marker():
    from toolkit.preprocessing.preprocess import OUTSIDE_MASK as marker

    assert marker == OUTSIDE_MASK == -1


def test_masked_channels_are_zero_outside_the_mask_after_augmentation():
    """200 fully augmented samples with noise always on: the masked channel is exactly 0 wherever the
    (rotated, scaled, mirrored) label says "outside the mask", the other channel is not."""
    rng = np.random.default_rng(0)
    settings = AugmentationSettings(p_noise=1.0)
    for final in ((24, 24, 24), (32, 32)):
        aug = Augmenter(final, settings=settings, mask_channels=(0,))
        outside_total, unmasked_nonzero = 0, 0
        for _ in range(100):
            data, seg = _masked_sample(rng, aug.sample)
            matrix = aug.draw_spatial(rng)
            if matrix is None:  # the loader reads just the window then
                offset, size = aug.read_window(None)
                box = (slice(None), *[slice(o, o + s) for o, s in zip(offset, size, strict=True)])
                data, seg = data[box], seg[box]
            out, out_seg = aug(data, seg, matrix, rng)
            outside = out_seg[0] < 0
            assert np.all(out[0][outside] == 0)
            outside_total += int(outside.sum())
            unmasked_nonzero += int(np.count_nonzero(out[1][outside]))
        assert outside_total > 0 and unmasked_nonzero > 0.9 * outside_total


def test_reset_can_be_switched_off():
    rng = np.random.default_rng(1)
    aug = Augmenter((24, 24, 24), settings=AugmentationSettings(p_noise=1.0, reset_outside_mask=False),
                    mask_channels=(0,))
    data, seg = _masked_sample(rng, aug.sample)
    out, out_seg = aug(data, seg, aug.draw_spatial(rng), rng)
    assert np.count_nonzero(out[0][out_seg[0] < 0]) > 0


def test_padding_past_the_sample_edge_is_outside_the_mask():
    """Zooming out (scale 1.4) samples past the sample's edge: label -1 there with pad_label -1."""
    seg = np.zeros((1, 20, 20), np.int16)
    seg[0, 8:12, 8:12] = 1
    data = np.ones((1, 20, 20), np.float32)
    _, padded = spatial_transform(data, seg, 1.4 * rotation_matrix((0.3,)).T, (20, 20), pad_label=-1)
    _, plain = spatial_transform(data, seg, 1.4 * rotation_matrix((0.3,)).T, (20, 20))
    assert padded[0, 0, 0] == -1 and plain[0, 0, 0] == 0
    assert np.array_equal(padded[0] == 1, plain[0] == 1) and np.array_equal(padded[0] <= 0, plain[0] == 0)
    assert (padded[0] == 0).sum() > 100  # the background inside the sample stays 0


def test_sampler_keeps_the_marker_and_pads_with_it(tmp_path):
    """Label values (0, 2, 5) map to channels (0, 1, 2); -1 stays -1; the padding is -1."""
    seg = np.full((1, 10, 10, 10), -1, np.int16)
    seg[0, 2:8, 2:8, 2:8] = 0
    seg[0, 4:6, 4:6, 4:6] = 2
    seg[0, 5, 5, 5] = 5
    save_case(tmp_path, "c", np.ones((1, 10, 10, 10), np.float32), seg, {"class_locations": {"2": [[4, 4, 4]]}})
    spec = PatchSpec(str(tmp_path), ("c",), (10, 10, 10), (16, 16, 16), 1, (0, 2, 5), seg_pad=-1)
    out = PatchSampler(spec).sample_one(np.random.default_rng(0), False)["seg"]
    assert set(np.unique(out)) == {-1, 0, 1, 2} and (out == -1).sum() == 16 ** 3 - 6 ** 3


def test_loader_batches_have_zero_outside_and_no_marker(tmp_path):
    """End to end: masked plan -> the training loader's batches hold no -1 labels, and with noise always
    on and nothing else, exactly the outside-mask voxels (label background) are 0."""
    rng = np.random.default_rng(2)
    for i in range(3):
        data, seg, props = synthetic_case(rng, (30, 30, 30))
        ball = np.sqrt(sum(g ** 2 for g in np.meshgrid(*[np.arange(30) - 15] * 3, indexing="ij"))) < 13
        data[:, ~ball] = 0
        seg[0][~ball & (seg[0] == 0)] = OUTSIDE_MASK
        save_case(tmp_path, f"c{i}", data, seg, props)
    only_noise = AugmentationSettings(**{k: 0.0 for k in ("p_rotation", "p_scale", "p_blur", "p_brightness",
                                                           "p_contrast", "p_lowres", "p_gamma", "p_gamma_inverted")},
                                      p_noise=1.0)
    patches = PatchSpec(str(tmp_path), ("c0", "c1", "c2"), (16, 16, 16), (24, 24, 24), 3, (0, 1, 2), seg_pad=-1)
    with BatchLoader(BatchSpec(patches, 3, True, 0, 0, settings=only_noise, mask_channels=(0,)), 0) as loader:
        batches = list(loader.batches(0, 8))
    zeros = 0
    for b in batches:
        assert b["seg"].min() == 0
        assert np.all(b["seg"][:, 0][b["data"][:, 0] == 0] == 0)
        zeros += int((b["data"] == 0).sum())
    assert zeros > 0


def test_training_setup_passes_the_plan_mask_to_the_loader(tmp_path):
    from toolkit.training.data import make_loaders
    from toolkit.training.options import TrainerOptions
    from toolkit.training.setup import resolve_training

    root, work = make_work(tmp_path, n_cases=2)
    wd = WorkDir.for_dataset(work, root)
    plans = json.loads(wd.plans.read_text(encoding="utf-8"))
    plans["configurations"]["3d_fullres"]["use_mask_for_norm"] = [True]
    wd.plans.write_text(json.dumps(plans), encoding="utf-8")
    train, val = make_loaders(resolve_training(root, work, "3d_fullres", 0), TrainerOptions(), 2, 0)
    for loader in (train, val):
        assert loader.spec.mask_channels == (0,) and loader.spec.patches.seg_pad == -1
        loader.close()
