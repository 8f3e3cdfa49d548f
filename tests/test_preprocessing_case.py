"""Normalisation statistics and preprocess_case: cropping, properties, foreground locations."""

from __future__ import annotations

import numpy as np
import pytest
from _preprocessing_helpers import make_plans, write_dataset

from toolkit.errors import SegkitError
from toolkit.io.images import Geometry, write_image
from toolkit.preprocessing.normalization import normalize
from toolkit.preprocessing.preprocess import MAX_LOCATIONS, preprocess_case, sample_class_locations


def test_zscore_unmasked_and_masked():
    rng = np.random.default_rng(0)
    data = rng.normal(50, 7, (2, 10, 12, 12)).astype(np.float32)
    mask = np.zeros((10, 12, 12), bool)
    mask[2:8, 3:9, 3:9] = True
    normalize(data, ["zscore", "zscore"], [False, True], mask, None)
    assert abs(data[0].mean()) < 1e-4 and abs(data[0].std() - 1) < 1e-4
    assert abs(data[1][mask].mean()) < 1e-4 and abs(data[1][mask].std() - 1) < 1e-4
    assert np.all(data[1][~mask] == 0)


def test_ct_clips_to_percentiles_and_uses_global_stats():
    raw = np.linspace(-1000, 1000, 2000, dtype=np.float32).reshape(1, 2, 10, 100)
    props = {"0": {"mean": 40.0, "std": 20.0, "percentile_00_5": -100.0, "percentile_99_5": 200.0}}
    out = normalize(raw.copy(), ["CT"], [False], None, props)
    np.testing.assert_allclose(out, (np.clip(raw, -100, 200) - 40) / 20, rtol=1e-6)


def test_normalization_errors_are_user_errors():
    data = np.ones((1, 2, 2, 2), np.float32)
    with pytest.raises(SegkitError, match="unknown normalisation"):
        normalize(data, ["minmax"], [False], None, None)
    with pytest.raises(SegkitError, match="intensity properties"):
        normalize(data, ["ct"], [False], None, {})
    with pytest.raises(SegkitError, match="channels"):
        normalize(data, ["zscore", "zscore"], [False, False], None, None)


def test_constant_image_maps_to_zero_not_nan():
    data = np.full((1, 3, 3, 3), 7.0, np.float32)
    assert np.all(normalize(data, ["zscore"], [False], None, None) == 0)


def _write(path, array, spacing=(1.0, 1.0, 1.0)):
    write_image(array, Geometry(tuple(reversed(spacing)), (0.0, 0.0, 0.0), tuple(np.eye(3).ravel())), path)


def test_multichannel_crop_uses_union_of_channels(tmp_path):
    a = np.zeros((12, 20, 20), np.float32)
    b = np.zeros_like(a)
    a[3:6, 4:10, 5:12] = 1.0
    b[4:9, 8:15, 2:7] = 2.0  # extends the box of channel 0 on every axis
    label = np.zeros(a.shape, np.uint8)
    label[4:6, 8:10, 5:7] = 1
    paths = [tmp_path / "c_0000.nii.gz", tmp_path / "c_0001.nii.gz"]
    _write(paths[0], a)
    _write(paths[1], b)
    _write(tmp_path / "c.nii.gz", label)
    plans = make_plans((1.0, 1.0, 1.0), norm=("zscore", "zscore"), mask=(True, True))
    data, seg, props = preprocess_case(paths, tmp_path / "c.nii.gz", plans, "3d_fullres")
    assert props["bbox"] == [[3, 9], [4, 15], [2, 12]]
    assert props["shape_before_crop"] == [12, 20, 20] and props["shape_after_crop"] == [6, 11, 10]
    assert data.shape == (2, 6, 11, 10) and seg.shape == (1, 6, 11, 10)
    assert data.dtype == np.float32 and seg.dtype == np.int16
    assert np.maximum(seg, 0).sum() == label.sum()  # nothing of the label was cut away
    # use_mask_for_norm: background outside the non-zero mask (union of the channels) is marked -1
    inside = ((a != 0) | (b != 0))[3:9, 4:15, 2:12]
    assert np.array_equal(seg[0] == -1, ~inside) and np.all(data[:, ~inside] == 0)
    _, unmasked, _ = preprocess_case(paths, tmp_path / "c.nii.gz", make_plans((1.0, 1.0, 1.0), norm=("zscore", "zscore"),
                                                                        mask=(False, False)), "3d_fullres")
    assert unmasked.min() == 0  # no marker without the mask


def test_properties_and_class_locations(tmp_path):
    root = write_dataset(tmp_path / "ds", 1, (20, 40, 40), (2.0, 1.0, 1.0))
    plans = make_plans((1.0, 1.5, 1.5), spacing_2d=(0.8, 0.8))
    images, label = [root / "imagesTr/case000_0000.nii.gz"], root / "labelsTr/case000.nii.gz"
    data, seg, props = preprocess_case(images, label, plans, "3d_fullres", seed=3)
    for key in ("geometry", "shape_before_crop", "bbox", "shape_after_crop", "spacing", "target_spacing",
                "shape_after_resampling", "class_locations"):
        assert key in props
    assert props["target_spacing"] == [1.0, 1.5, 1.5]
    assert list(data.shape[1:]) == props["shape_after_resampling"]
    np.testing.assert_allclose(props["spacing"], [2.0, 1.0, 1.0])
    for value in ("1", "2"):
        locs = np.asarray(props["class_locations"][value])
        assert 0 < len(locs) <= MAX_LOCATIONS
        assert np.all(seg[0][tuple(locs.T)] == int(value))
    _, _, again = preprocess_case(images, label, plans, "3d_fullres", seed=3)
    assert again["class_locations"] == props["class_locations"]
    # 2d: in-plane to the 2d spacing, z untouched
    data2d, _, props2d = preprocess_case(images, label, plans, "2d")
    assert props2d["target_spacing"][0] == pytest.approx(2.0)
    assert data2d.shape[1] == props2d["shape_after_crop"][0]
    assert props2d["shape_after_resampling"][1] > props2d["shape_after_crop"][1]


def test_location_sampling_caps_and_is_seeded():
    seg = np.zeros((30, 30, 30), np.int16)
    seg[:, :, :20] = 1  # 18,000 voxels
    seg[0, 0, 25] = 2
    locs = sample_class_locations(seg, [1, 2, 3], seed=1)
    assert len(locs["1"]) == MAX_LOCATIONS and len(set(map(tuple, locs["1"]))) == MAX_LOCATIONS
    assert locs["2"] == [[0, 0, 25]] and locs["3"] == []
    assert locs == sample_class_locations(seg, [1, 2, 3], seed=1)
    assert locs["1"] != sample_class_locations(seg, [1], seed=2)["1"]


def test_bad_labels_and_shapes_are_user_errors(tmp_path):
    image = np.ones((4, 5, 6), np.float32)
    _write(tmp_path / "i_0000.nii.gz", image)
    _write(tmp_path / "wrong_shape.nii.gz", np.zeros((4, 5, 5), np.uint8))
    _write(tmp_path / "unknown.nii.gz", np.full((4, 5, 6), 9, np.uint8))
    plans = make_plans((1.0, 1.0, 1.0))
    with pytest.raises(SegkitError, match="label shape"):
        preprocess_case([tmp_path / "i_0000.nii.gz"], tmp_path / "wrong_shape.nii.gz", plans, "3d_fullres")
    with pytest.raises(SegkitError, match=r"\[9\]"):
        preprocess_case([tmp_path / "i_0000.nii.gz"], tmp_path / "unknown.nii.gz", plans, "3d_fullres")
    with pytest.raises(SegkitError, match="not in plans"):
        preprocess_case([tmp_path / "i_0000.nii.gz"], None, plans, "3d_lowres")
