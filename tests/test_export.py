"""Export: label -> preprocess -> export gives back the label on the exact input geometry."""

from __future__ import annotations

import numpy as np
import pytest
from _preprocessing_helpers import dice, make_plans, write_dataset

import toolkit.preprocessing.export as export_mod
from toolkit.io.images import Geometry, read_image, write_image
from toolkit.preprocessing.export import export_prediction, resample_probabilities_to_original
from toolkit.preprocessing.preprocess import preprocess_case


def assert_same_geometry(written: Geometry, source: Geometry) -> None:
    """Spacing and origin bit-exact; direction to 1e-7, because a NIfTI direction read back and written
    again can move by ~5e-9 (SimpleITK stores it as a float32 quaternion)."""
    assert written.spacing_xyz == source.spacing_xyz and written.origin_xyz == source.origin_xyz
    np.testing.assert_allclose(written.direction, source.direction, rtol=0, atol=1e-7)


def _one_hot(seg: np.ndarray, values) -> np.ndarray:
    return np.stack([(seg[0] == v).astype(np.float32) for v in values])


def _round_trip(root, plans, config, tmp_path, backend="auto", case="case000"):
    images, label = [root / f"imagesTr/{case}_0000.nii.gz"], root / f"labelsTr/{case}.nii.gz"
    _, seg, props = preprocess_case(images, label, plans, config)
    out = tmp_path / f"{case}_{config}_{backend}"
    export_prediction(_one_hot(seg, [0, 1, 2]), props, plans, config, out, ".nii.gz", backend=backend)
    pred, geo = read_image(str(out) + ".nii.gz")
    ref, ref_geo = read_image(label)
    _, image_geo = read_image(images[0])
    assert_same_geometry(geo, image_geo)
    assert geo.differs_from(ref_geo) is None and pred.shape == ref.shape
    return pred, ref


@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("target, min_dice", [(0.8, 0.99), (1.0, 1.0), (1.15, 0.97)])
def test_round_trip_isotropic(tmp_path, backend, target, min_dice):
    """Finer or equal target: lossless up to 1%; a coarser grid (1.15 mm) costs the ~9-voxel-radius
    lesion a few percent of Dice, the information the coarser grid cannot hold."""
    root = write_dataset(tmp_path / "iso", 1, (48, 64, 64), (1.0, 1.0, 1.0))
    pred, ref = _round_trip(root, make_plans((target,) * 3), "3d_fullres", tmp_path, backend)
    for value in (1, 2):
        assert dice(pred, ref, value) >= min_dice


@pytest.mark.parametrize("config", ["3d_fullres", "2d"])
def test_round_trip_anisotropic(tmp_path, config):
    root = write_dataset(tmp_path / "aniso", 1, (20, 80, 80), (4.0, 0.9, 0.9))
    plans = make_plans((2.5, 1.1, 1.1), spacing_2d=(1.1, 1.1))
    pred, ref = _round_trip(root, plans, config, tmp_path)
    for value in (1, 2):
        assert dice(pred, ref, value) >= 0.97


def test_backends_and_slab_sizes_agree(tmp_path, monkeypatch):
    root = write_dataset(tmp_path / "ds", 1, (18, 40, 40), (3.5, 1.0, 1.0))
    plans = make_plans((1.5, 1.4, 1.4))  # upsample z, downsample in-plane; separate z (current spacing)
    _, seg, props = preprocess_case([root / "imagesTr/case000_0000.nii.gz"], None, plans, "3d_fullres")
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(3, *props["shape_after_resampling"])).astype(np.float32)
    probs = np.exp(logits) / np.exp(logits).sum(0)
    big = resample_probabilities_to_original(probs, props, plans, "3d_fullres", backend="numpy")
    monkeypatch.setattr(export_mod, "SLAB_BYTES", 1)  # one output slice per slab
    torch = pytest.importorskip("torch")
    for backend, p in (("numpy", probs), ("torch", probs), ("auto", torch.from_numpy(probs).half())):
        small = resample_probabilities_to_original(p, props, plans, "3d_fullres", backend=backend)
        np.testing.assert_allclose(small, big, atol=1e-5 if backend != "auto" else 2e-3)
    assert big.shape == (3, *props["shape_before_crop"])
    np.testing.assert_allclose(big.sum(0), 1.0, atol=1e-5)
    box = tuple(slice(a, b) for a, b in props["bbox"])
    outside = np.ones(props["shape_before_crop"], bool)
    outside[box] = False
    assert np.all(big[0][outside] == 1.0)


def test_probabilities_file_and_label_values(tmp_path):
    root = write_dataset(tmp_path / "ds", 1, (16, 32, 32), (1.0, 1.0, 1.0))
    plans = make_plans((1.5, 1.5, 1.5), labels={"background": 0, "a": 3, "b": 7})
    images, label = [root / "imagesTr/case000_0000.nii.gz"], None
    _, _, props = preprocess_case(images, label, plans, "3d_fullres")
    rng = np.random.default_rng(1)
    p = rng.random((3, *props["shape_after_resampling"])).astype(np.float32)
    p /= p.sum(0)
    export_prediction(p, props, plans, "3d_fullres", tmp_path / "out" / "case000.nii.gz", ".nii.gz",
                      save_probabilities=True)
    seg, geo = read_image(tmp_path / "out" / "case000.nii.gz")
    stored = np.load(tmp_path / "out" / "case000.npz")["probabilities"]
    assert stored.shape == (3, *seg.shape) and stored.dtype == np.float32
    np.testing.assert_array_equal(seg, np.array([0, 3, 7])[stored.argmax(0)])
    assert set(np.unique(seg)) <= {0, 3, 7} and len(np.unique(seg)) == 3
    with pytest.raises(ValueError, match="label values"):
        export_prediction(p, props, plans, "3d_fullres", tmp_path / "x", ".nii.gz", labels=[0, 1])
    with pytest.raises(ValueError, match="do not match"):
        export_prediction(p[:, :-1], props, plans, "3d_fullres", tmp_path / "x", ".nii.gz")


def test_two_dimensional_images_round_trip(tmp_path):
    yy, xx = np.mgrid[:48, :60]
    label = (((yy - 24) / 15) ** 2 + ((xx - 30) / 20) ** 2 <= 1).astype(np.uint8)
    image = (label * 50 + 10).astype(np.float32)
    geo = Geometry((0.5, 0.7), (3.0, -2.0), (0.0, 1.0, 1.0, 0.0))
    write_image(image, geo, tmp_path / "c_0000.nii.gz")
    write_image(label, geo, tmp_path / "c.nii.gz")
    plans = make_plans((999.0, 0.6, 0.45), spacing_2d=(0.6, 0.45))
    _, seg, props = preprocess_case([tmp_path / "c_0000.nii.gz"], tmp_path / "c.nii.gz", plans, "2d")
    assert seg.shape[1] == 1
    export_prediction(_one_hot(seg, [0, 1, 2]), props, plans, "2d", tmp_path / "pred", ".nii.gz")
    pred, pred_geo = read_image(tmp_path / "pred.nii.gz")
    assert_same_geometry(pred_geo, read_image(tmp_path / "c_0000.nii.gz")[1])
    assert pred.shape == label.shape
    assert dice(pred, label, 1) >= 0.99
