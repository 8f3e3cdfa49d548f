"""The dataset fingerprint: geometry, cropping, case-weighted foreground statistics, determinism,
parallel == serial, 2D images, the fingerprint/plan commands, and real Hippocampus data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from toolkit.cli import main
from toolkit.dataset import load_dataset
from toolkit.errors import SegkitError
from toolkit.fingerprint import compute_fingerprint
from toolkit.io.images import Geometry, write_image


def _write_case(root: Path, case: str, image: np.ndarray, label: np.ndarray, spacing_xyz) -> None:
    nd = image.ndim
    geo = Geometry(tuple(float(s) for s in spacing_xyz), (0.0,) * nd, tuple(np.eye(nd).ravel().tolist()))
    write_image(image.astype(np.float32), geo, root / "imagesTr" / f"{case}_0000.nii.gz")
    write_image(label.astype(np.uint8), geo, root / "labelsTr" / f"{case}.nii.gz")


def _dataset_json(root: Path, n: int, channel: str = "MRI") -> None:
    (root / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": channel}, "labels": {"background": 0, "fg": 1},
        "numTraining": n, "file_ending": ".nii.gz"}))


@pytest.fixture
def tiny(tmp_path) -> Path:
    """Case a: 10x12x14 image, non-zero box 4x5x6, fg = 8 voxels of value 10.
    Case b: 6x6x6 image all non-zero, fg = 27 voxels of value 20."""
    root = tmp_path / "Dataset901_Tiny"
    a = np.zeros((10, 12, 14))
    a[2:6, 3:8, 4:10] = 1.0
    la = np.zeros_like(a)
    la[2:4, 3:5, 4:6] = 1
    a[la > 0] = 10.0
    b = np.full((6, 6, 6), 2.0)
    lb = np.zeros_like(b)
    lb[:3, :3, :3] = 1
    b[lb > 0] = 20.0
    _write_case(root, "a", a, la, (0.8, 0.9, 2.5))
    _write_case(root, "b", b, lb, (1.0, 1.0, 3.0))
    _dataset_json(root, 2)
    return root


def test_geometry_and_cropping(tiny):
    fp = compute_fingerprint(load_dataset(tiny), progress=False)
    assert np.allclose(fp["spacings"], [[2.5, 0.9, 0.8], [3.0, 1.0, 1.0]])  # (z, y, x)
    assert fp["shapes_after_crop"] == [[4, 5, 6], [6, 6, 6]]
    assert fp["shapes_before_crop"] == [[10, 12, 14], [6, 6, 6]]
    assert fp["relative_sizes_after_crop"] == pytest.approx([120 / 1680, 1.0])
    assert fp["median_relative_size_after_cropping"] == pytest.approx((120 / 1680 + 1) / 2)
    assert fp["case_identifiers"] == ["a", "b"] and fp["foreground_voxels"] == [8, 27]


def test_foreground_statistics_weigh_every_case_equally(tiny):
    stats = compute_fingerprint(load_dataset(tiny), progress=False)["foreground_intensity_properties_per_channel"]
    s = stats["0"]
    # every case stands for the same number of draws: mean of 10 and 20, not the voxel-weighted 17.7
    assert s["mean"] == pytest.approx(15.0) and s["std"] == pytest.approx(5.0)
    assert (s["min"], s["max"]) == (10.0, 20.0)
    assert (s["percentile_00_5"], s["percentile_99_5"]) == (10.0, 20.0)


def test_sampling_is_seeded_and_parallel_equals_serial(tiny):
    spec = load_dataset(tiny)
    one = compute_fingerprint(spec, jobs=1, total_samples=20, progress=False)  # 10 draws per case
    assert one["intensity_sampling"]["per_case"] == 10
    again = compute_fingerprint(spec, jobs=1, total_samples=20, progress=False)
    two = compute_fingerprint(spec, jobs=2, total_samples=20, progress=False)
    assert one == again == two


def test_two_channel_ct_and_mri(tmp_path):
    root = tmp_path / "Dataset902_Two"
    geo = Geometry((1.0, 1.0, 1.0), (0.0,) * 3, tuple(np.eye(3).ravel().tolist()))
    ct = np.full((4, 4, 4), -1000.0)
    mr = np.zeros((4, 4, 4))
    lab = np.zeros((4, 4, 4))
    lab[1:3, 1:3, 1:3] = 1
    ct[lab > 0], mr[lab > 0] = 40.0, 7.0
    write_image(ct.astype(np.float32), geo, root / "imagesTr" / "c_0000.nii.gz")
    write_image(mr.astype(np.float32), geo, root / "imagesTr" / "c_0001.nii.gz")
    write_image(lab.astype(np.uint8), geo, root / "labelsTr" / "c.nii.gz")
    (root / "dataset.json").write_text(json.dumps({"channel_names": {"0": "CT", "1": "MRI"}, "labels": {
        "background": 0, "fg": 1}, "numTraining": 1, "file_ending": ".nii.gz"}))
    fp = compute_fingerprint(load_dataset(root), progress=False)
    stats = fp["foreground_intensity_properties_per_channel"]
    assert stats["0"]["mean"] == 40.0 and stats["1"]["mean"] == 7.0
    assert fp["shapes_after_crop"] == [[4, 4, 4]]  # CT air is non-zero: nothing cropped


def test_2d_images_get_one_slice_of_spacing_999(tmp_path):
    root = tmp_path / "Dataset903_Flat"
    img = np.ones((20, 30))
    lab = np.zeros((20, 30))
    lab[5:10, 5:10] = 1
    _write_case(root, "p", img, lab, (0.5, 0.7))
    _dataset_json(root, 1)
    fp = compute_fingerprint(load_dataset(root), progress=False)
    assert np.allclose(fp["spacings"], [[999.0, 0.7, 0.5]]) and fp["shapes_after_crop"] == [[1, 20, 30]]


def test_label_shape_mismatch_is_a_user_error(tiny):
    geo = Geometry((1.0, 1.0, 3.0), (0.0,) * 3, tuple(np.eye(3).ravel().tolist()))
    write_image(np.zeros((5, 5, 5), np.uint8), geo, tiny / "labelsTr" / "b.nii.gz")
    with pytest.raises(SegkitError, match="label shape"):
        compute_fingerprint(load_dataset(tiny), progress=False)


# ---- commands -------------------------------------------------------------------------------------

def _run(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    out = capsys.readouterr()
    return exc.value.code, out.out, out.err


def test_fingerprint_and_plan_commands(tiny, tmp_path, capsys):
    work = tmp_path / "work"
    code, out, _ = _run(["fingerprint", str(tiny), "--work", str(work), "-j", "1"], capsys)
    assert code == 0 and out.strip() == str(work / tiny.name / "fingerprint.json")
    assert json.loads((work / tiny.name / "dataset.json").read_text())["numTraining"] == 2
    code, out, err = _run(["plan", str(tiny), "--work", str(work), "--explain"], capsys)
    assert code == 0 and "3d_fullres" in out and "patch size" in out
    assert "[spacing]" in err and "spacing: per-axis median" in err
    plans = json.loads((work / tiny.name / "plans.json").read_text())
    assert set(plans["configurations"]) >= {"2d", "3d_fullres"}
    assert plans["foreground_intensity_properties_per_channel"]["0"]["mean"] == pytest.approx(15.0)
    # from a fingerprint alone: plans JSON on stdout, table on stderr, identical plans
    code, out, err = _run(["plan", "--fingerprint", str(work / tiny.name / "fingerprint.json"),
                           "--dataset-json", str(tiny / "dataset.json")], capsys)
    assert code == 0 and "patch size" in err
    alone = json.loads(out)
    assert alone["configurations"] == plans["configurations"]


@pytest.mark.parametrize("argv, message", [
    (["plan"], "give either DATASET"),
    (["plan", "--fingerprint", "nope.json"], "needs --dataset-json"),
    (["plan", "--fingerprint", "nope.json", "--dataset-json", "ds.json"], "file not found"),
])
def test_plan_usage_errors_are_one_line(argv, message, capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    code, out, err = _run(argv, capsys)
    assert code == 2 and out == "" and message in err and len(err.strip().splitlines()) == 1


def test_bad_fingerprint_is_a_user_error(tmp_path, capsys, tiny):
    bad = tmp_path / "fp.json"
    bad.write_text(json.dumps({"spacings": [[1, 1, 1]], "shapes_after_crop": []}))
    code, _, err = _run(["plan", "--fingerprint", str(bad), "--dataset-json", str(tiny / "dataset.json")], capsys)
    assert code == 2 and "lacks key" in err


# ---- real data ------------------------------------------------------------------------------------

def test_hippocampus_fingerprint_and_plan(hippocampus_v2):
    from toolkit.planning import plan_experiment

    spec = load_dataset(hippocampus_v2)
    fp = compute_fingerprint(spec, jobs=2, progress=False)
    assert fp["num_cases"] == spec.num_training == 195
    assert np.allclose(fp["spacings"], 1.0)
    med = np.median(fp["shapes_after_crop"], axis=0)
    assert 30 <= med[0] <= 40 and 45 <= med[1] <= 55 and 30 <= med[2] <= 40
    stats = fp["foreground_intensity_properties_per_channel"]["0"]
    assert stats["min"] <= stats["percentile_00_5"] <= stats["median"] <= stats["percentile_99_5"] <= stats["max"]
    plans, _ = plan_experiment(fp, spec)
    full = plans["configurations"]["3d_fullres"]
    assert full["spacing"] == [1.0, 1.0, 1.0]
    assert full["patch_size"] == [40, 56, 40]  # nnU-Net v2's published Hippocampus patch
    assert "3d_lowres" not in plans["configurations"]


def test_weighted_statistics_equal_those_of_the_replicated_draws():
    from toolkit.fingerprint.intensity import pooled_statistics, sample_foreground

    rng = np.random.default_rng(0)
    quota = 60  # case sizes divide the quota: every weight is an integer number of draws
    cases = [rng.normal(i, 1 + i, size=n).astype(np.float32) for i, n in enumerate([1, 2, 3, 5, 12, 30, 60])]
    cases.append(rng.normal(size=500).astype(np.float32))  # larger than the quota: 60 seeded draws
    samples = [sample_foreground(c, quota, rng) for c in cases]
    draws = np.concatenate([np.repeat(s.values, round(s.weight)) for s in samples])
    assert draws.size == quota * len(cases)
    stats = pooled_statistics(samples)
    assert stats["mean"] == pytest.approx(draws.mean(), rel=1e-6)
    assert stats["std"] == pytest.approx(draws.std(), rel=1e-6)
    for key, q in (("percentile_00_5", 0.5), ("median", 50.0), ("percentile_99_5", 99.5)):
        assert stats[key] == np.percentile(draws, q, method="lower")
    assert (stats["min"], stats["max"]) == (draws.min(), draws.max())


def test_plan_recomputes_a_stale_fingerprint(tiny, tmp_path, capsys):
    work = tmp_path / "work"
    code, _, err = _run(["plan", str(tiny), "--work", str(work), "-j", "1"], capsys)
    assert code == 0 and "computing it first" in err
    a = np.zeros((8, 8, 8))
    a[2:6, 2:6, 2:6] = 5.0
    _write_case(tiny, "c", a, (a > 0).astype(np.uint8), (1.0, 1.0, 1.0))
    code, _, err = _run(["plan", str(tiny), "--work", str(work), "-j", "1"], capsys)
    assert code == 0 and "other training cases" in err
    fp = json.loads((work / tiny.name / "fingerprint.json").read_text())
    assert fp["case_identifiers"] == ["a", "b", "c"]
