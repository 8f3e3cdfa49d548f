"""Patch sampling (oversampling rule, padding), augmentation alignment, determinism, cascade masks."""

from __future__ import annotations

import numpy as np
import pytest
from batchgenerators.transforms.abstract_transforms import Compose
from batchgenerators.transforms.spatial_transforms import MirrorTransform, SpatialTransform
from training_helpers import synthetic_case

from toolkit.preprocessing.storage import save_case
from toolkit.training.augment import To2D, To3D, sample_size, spatial_plan, training_transforms
from toolkit.training.cascade import PreviousStageToData, random_binary_operator, remove_random_component
from toolkit.training.loader import BatchLoader, BatchSpec
from toolkit.training.sampling import PatchSampler, PatchSpec, bbox_bounds, crop_with_pad, num_forced


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


def _spatial_only(final, force: bool) -> Compose:
    steps = [t for t in training_transforms(final).transforms
             if isinstance(t, SpatialTransform | MirrorTransform | To2D | To3D)]
    for t in steps:
        if isinstance(t, SpatialTransform) and force:
            t.p_rot_per_sample = t.p_scale_per_sample = 1.0
    return Compose(steps)


@pytest.mark.parametrize("final", [(24, 24, 24), (8, 32, 32), (32, 32)])
def test_augmentation_keeps_image_and_label_aligned(final):
    """The label itself as the image: after rotation/scaling/mirroring both must still coincide."""
    rng = np.random.default_rng(3)
    sample = sample_size(final)
    seg = np.zeros((2, 1, *sample), np.int16)
    for b in range(2):  # a few random boxes
        for _ in range(4):
            lo = [rng.integers(0, s - s // 3) for s in sample]
            seg[(b, 0, *[slice(a, a + s // 4 + 2) for a, s in zip(lo, sample, strict=True)])] = 1
    np.random.seed(0)
    out = _spatial_only(final, force=True)(data=seg.astype(np.float32), seg=seg.copy())
    assert out["data"].shape == (2, 1, *final) and out["seg"].shape == (2, 1, *final)
    img, lab = out["data"] > 0.5, out["seg"] > 0
    dice = 2 * (img & lab).sum() / (img.sum() + lab.sum())
    assert lab.sum() > 0 and dice > 0.95


def test_full_pipeline_shapes_and_labels():
    final = (24, 24, 24)
    sample = sample_size(final)
    np.random.seed(1)
    data = np.random.randn(2, 1, *sample).astype(np.float32)
    seg = np.random.randint(0, 3, (2, 1, *sample)).astype(np.int16)
    out = training_transforms(final)(data=data, seg=seg)
    assert out["data"].shape == (2, 1, *final) and set(np.unique(out["seg"])) <= {0, 1, 2}


def _batches(store, workers: int, seed: int, cases=("c0", "c1", "c2", "c3"), **kw):
    final = (16, 16, 16)
    spec = BatchSpec(_patch_spec(store, final, sample_size(final), 2, cases, **kw), 3, True, seed, 0)
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
    prev = np.zeros((2, 1, 12, 12, 12), np.int16)
    prev[:, 0, 3:8, 3:8, 3:8] = 2
    np.random.seed(0)
    out = PreviousStageToData(3, augment=True)(data=np.zeros((2, 1, 12, 12, 12), np.float32), seg=prev, prev=prev)
    assert out["data"].shape == (2, 4, 12, 12, 12) and "prev" not in out
    assert np.allclose(out["data"][:, 1:].sum(1), 1.0)
    plain = PreviousStageToData(3, augment=False)(data=np.zeros((2, 1, 12, 12, 12), np.float32), seg=prev, prev=prev)
    assert np.array_equal(plain["data"][:, 3] > 0, prev[:, 0] == 2)


def test_cascade_loader_adds_previous_stage_channels(store, tmp_path):
    for i in range(4):
        seg = np.load(store / f"c{i}_seg.npy")
        np.save(tmp_path / f"c{i}.npy", seg.astype(np.int8))  # the "previous stage" = the truth
    batches = _batches(store, 0, seed=1, cascade_folder=str(tmp_path))
    assert batches[0]["data"].shape == (2, 1 + 3, 16, 16, 16)
