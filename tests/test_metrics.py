"""Metric values against hand-computed cases, including anisotropic spacing for HD95 and NSD."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from toolkit.errors import SegkitError
from toolkit.evaluation import case_metrics, class_metrics, dice_per_class, evaluate_folder, format_table
from toolkit.evaluation.metrics import surface
from toolkit.io.images import Geometry, write_image


def _geo(spacing_zyx=(1.0, 1.0, 1.0)) -> Geometry:
    return Geometry(tuple(reversed(spacing_zyx)), (0.0, 0.0, 0.0), (1, 0, 0, 0, 1, 0, 0, 0, 1))


def test_overlap_counts_volumes_hand_computed():
    pred = np.zeros((6, 6, 6), bool)
    ref = np.zeros((6, 6, 6), bool)
    pred[1:3, 1:3, 1:3] = True          # 8 voxels
    ref[1:3, 1:3, 2:4] = True           # shifted by one along x: 4 overlap
    m = class_metrics(pred, ref, spacing=(2.0, 1.0, 0.25), surface_metrics=False)
    assert (m["TP"], m["FP"], m["FN"]) == (4, 4, 4)
    assert m["Dice"] == pytest.approx(0.5)
    assert m["IoU"] == pytest.approx(1 / 3)
    assert m["volume_pred_mm3"] == pytest.approx(8 * 0.5)
    assert m["volume_ref_mm3"] == pytest.approx(8 * 0.5)
    assert "HD95" not in m


def test_empty_both_and_one_side_empty():
    empty = np.zeros((4, 5, 6), bool)
    m = class_metrics(empty, empty, spacing=(3.0, 1.0, 1.0))
    assert m["Dice"] is None and m["IoU"] is None and m["HD95"] is None and m["NSD"] is None
    assert m["TP"] == m["FP"] == m["FN"] == 0

    some = empty.copy()
    some[1, 1, 1] = True
    for pred, ref in ((some, empty), (empty, some)):
        m = class_metrics(pred, ref, spacing=(3.0, 1.0, 2.0))
        assert m["Dice"] == 0.0 and m["NSD"] == 0.0
        # documented convention: the image diagonal in mm, between opposite corner voxel centres
        assert m["HD95"] == pytest.approx(math.sqrt((3 * 3.0) ** 2 + (4 * 1.0) ** 2 + (5 * 2.0) ** 2))


def test_dice_per_class_labels_and_ignore():
    ref = np.array([[0, 1, 1, 2], [0, 1, 3, 3]])
    pred = np.array([[0, 1, 2, 2], [0, 1, 1, 1]])
    assert dice_per_class(pred, ref, [1, 2, 4]) == {1: pytest.approx(2 * 2 / (4 + 3)),
                                                     2: pytest.approx(2 * 1 / 3), 4: None}
    # label 3 is the ignore label: the two class-1 voxels predicted there are no false positives
    assert dice_per_class(pred, ref, [1], ignore_label=3) == {1: pytest.approx(2 * 2 / (3 + 2))}


@pytest.mark.parametrize(("axis", "spacing", "expected_mm"), [
    (0, (3.0, 1.0, 0.5), 9.0),     # planes 3 slices apart along z at 3 mm
    (1, (3.0, 1.0, 0.5), 3.0),     # 3 rows apart along y at 1 mm
    (2, (3.0, 1.0, 0.5), 1.5),     # 3 columns apart along x at 0.5 mm
])
def test_parallel_planes_anisotropic(axis, spacing, expected_mm):
    pred = np.zeros((8, 9, 10), bool)
    ref = np.zeros_like(pred)
    pred[(slice(None),) * axis + (2,)] = True
    ref[(slice(None),) * axis + (5,)] = True
    m = class_metrics(pred, ref, spacing=spacing, tolerance_mm=expected_mm - 0.01)
    assert m["HD95"] == pytest.approx(expected_mm)
    assert m["NSD"] == 0.0
    m = class_metrics(pred, ref, spacing=spacing, tolerance_mm=expected_mm)
    assert m["NSD"] == 1.0
    assert m["Dice"] == 0.0


def test_hd95_takes_worse_direction_and_nsd_fraction():
    ref = np.zeros((12, 6, 6), bool)
    ref[2] = True                         # 36 surface voxels
    pred = ref.copy()
    pred[10] = True                       # a second plane 8 slices away: 72 surface voxels
    m = class_metrics(pred, ref, spacing=(0.5, 2.0, 2.0), tolerance_mm=1.0)
    # pred -> ref: half the distances are 0, half 4 mm: the 95th percentile is 4; ref -> pred: all 0
    assert m["HD95"] == pytest.approx(4.0)
    assert m["NSD"] == pytest.approx((36 + 36) / (72 + 36))


def _face_surface(mask: np.ndarray) -> np.ndarray:
    """Brute force, no morphology: a mask voxel is on the surface when one of its 6 face neighbours is
    outside the mask or outside the image."""
    padded = np.pad(mask, 1, constant_values=False)
    out = np.zeros_like(mask)
    for z, y, x in np.argwhere(mask):
        z, y, x = z + 1, y + 1, x + 1
        neighbours = (padded[z - 1, y, x], padded[z + 1, y, x], padded[z, y - 1, x], padded[z, y + 1, x],
                      padded[z, y, x - 1], padded[z, y, x + 1])
        out[z - 1, y - 1, x - 1] = not all(neighbours)
    return out


def _brute_force(pred, ref, spacing, tol):
    """HD95 and NSD from all pairwise surface-voxel distances in mm (no helper of the module)."""
    pa = np.argwhere(_face_surface(pred)) * np.asarray(spacing)
    pb = np.argwhere(_face_surface(ref)) * np.asarray(spacing)
    d = cdist(pa, pb)
    d_ab, d_ba = d.min(axis=1), d.min(axis=0)
    hd95 = max(np.percentile(d_ab, 95), np.percentile(d_ba, 95))
    nsd = (np.sum(d_ab <= tol) + np.sum(d_ba <= tol)) / (d_ab.size + d_ba.size)
    return hd95, nsd


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_surface_metrics_match_brute_force(seed):
    """EDT + bounding-box cropping equals pairwise distances, masks touching the border included."""
    rng = np.random.default_rng(seed)
    shape = (7, 11, 9)
    pred = rng.random(shape) < 0.3
    ref = np.zeros(shape, bool)
    ref[0:4, 3:11, 2:6] = True
    ref[5, 1, 1] = True
    spacing = (2.5, 0.7, 1.3)
    m = class_metrics(pred, ref, spacing=spacing, tolerance_mm=1.0)
    hd95, nsd = _brute_force(pred, ref, spacing, 1.0)
    assert m["HD95"] == pytest.approx(hd95)
    assert m["NSD"] == pytest.approx(nsd)


@pytest.mark.parametrize("tol", [0.5, 1.0, 2.0])
def test_surface_metrics_of_solid_shapes_match_brute_force(tol):
    """Solid shapes (a ball against an offset block): which voxels are surface matters here."""
    grid = np.indices((12, 14, 13)).astype(float)
    pred = ((grid[0] - 5.5) / 1.6) ** 2 + ((grid[1] - 6.0) / 4.5) ** 2 + ((grid[2] - 6.5) / 3.5) ** 2 <= 1
    ref = np.zeros(pred.shape, bool)
    ref[3:9, 3:11, 4:11] = True
    spacing = (2.5, 0.7, 1.3)
    m = class_metrics(pred, ref, spacing=spacing, tolerance_mm=tol)
    hd95, nsd = _brute_force(pred, ref, spacing, tol)
    assert 0.0 < nsd < 1.0
    assert m["HD95"] == pytest.approx(hd95)
    assert m["NSD"] == pytest.approx(nsd)


def test_brute_force_surface_agrees_with_the_module_on_random_masks():
    rng = np.random.default_rng(4)
    for _ in range(5):
        mask = rng.random((6, 7, 5)) < 0.6
        assert np.array_equal(surface(mask), _face_surface(mask))


def test_surface_of_solid_block():
    mask = np.zeros((5, 5, 5), bool)
    mask[1:4, 1:4, 1:4] = True
    assert surface(mask).sum() == 27 - 1      # only the centre voxel is interior
    mask[:] = True
    assert surface(mask).sum() == 125 - 27    # image border counts as outside


def test_case_metrics_keys_and_spacing_check():
    seg = np.zeros((3, 4, 5), np.uint8)
    seg[1, 1:3, 1:3] = 2
    out = case_metrics(seg, seg, [1, 2], spacing=(1, 1, 1))
    assert set(out) == {"1", "2"}
    assert out["1"]["Dice"] is None and out["2"]["Dice"] == 1.0 and out["2"]["HD95"] == 0.0
    with pytest.raises(ValueError):
        case_metrics(seg, seg, [1], spacing=(1, 1))


DATASET_JSON = {"channel_names": {"0": "MRI"}, "labels": {"background": 0, "organ": 1, "lesion": 2},
                "numTraining": 2, "file_ending": ".nii.gz"}


def _write_folder_pair(tmp_path):
    pred_dir, ref_dir = tmp_path / "pred", tmp_path / "ref"
    geo = _geo((2.0, 1.0, 1.0))
    ref_a = np.zeros((6, 8, 8), np.uint8)
    ref_a[1:4, 2:6, 2:6] = 1
    pred_a = ref_a.copy()                         # perfect organ, no lesion anywhere: lesion empty-both
    ref_b = ref_a.copy()
    ref_b[2, 3:5, 3:5] = 2
    pred_b = np.zeros_like(ref_b)
    pred_b[1:4, 2:6, 2:4] = 1                     # half the organ (minus lesion overlap), lesion missed
    for case, pred, ref in (("a", pred_a, ref_a), ("b", pred_b, ref_b)):
        write_image(pred, geo, pred_dir / f"{case}.nii.gz")
        write_image(ref, geo, ref_dir / f"{case}.nii.gz")
    write_image(ref_b, geo, ref_dir / "c.nii.gz")  # a reference without prediction
    return pred_dir, ref_dir, pred_b, ref_b


def test_evaluate_folder_means_and_output(tmp_path, capsys):
    pred_dir, ref_dir, pred_b, ref_b = _write_folder_pair(tmp_path)
    out = tmp_path / "summary.json"
    summary = evaluate_folder(pred_dir, ref_dir, DATASET_JSON, tolerance_mm=2.0, workers=1, output=out)
    assert json.loads(out.read_text()) == json.loads(json.dumps(summary))
    assert [c["case"] for c in summary["per_case"]] == ["a", "b"]
    assert summary["missing_predictions"] == ["c"]
    assert "c" in capsys.readouterr().err
    dice_b = dice_per_class(pred_b, ref_b, [1, 2])
    assert summary["mean"]["1"]["Dice"] == pytest.approx((1.0 + dice_b[1]) / 2)
    # lesion: case a is empty-both (excluded), case b missed it: mean over one case
    assert summary["per_case"][0]["metrics"]["2"]["Dice"] is None
    assert summary["mean"]["2"]["Dice"] == 0.0
    assert summary["foreground_mean"]["Dice"] == pytest.approx(((1.0 + dice_b[1]) / 2 + 0.0) / 2)
    assert summary["mean"]["1"]["volume_ref_mm3"] == pytest.approx(2.0 * (48 + 44) / 2)
    table = format_table(summary, {1: "organ", 2: "lesion"})
    assert "foreground mean" in table and "lesion" in table


def test_evaluate_folder_rejects_misplaced_prediction(tmp_path):
    pred_dir, ref_dir, _, _ = _write_folder_pair(tmp_path)
    write_image(np.zeros((6, 8, 8), np.uint8), _geo((1.0, 1.0, 1.0)), pred_dir / "a.nii.gz")
    with pytest.raises(SegkitError, match="geometry"):
        evaluate_folder(pred_dir, ref_dir, DATASET_JSON)
    write_image(np.zeros((6, 8, 7), np.uint8), _geo((2.0, 1.0, 1.0)), pred_dir / "a.nii.gz")
    with pytest.raises(SegkitError, match="shape"):
        evaluate_folder(pred_dir, ref_dir, DATASET_JSON)
    with pytest.raises(SegkitError, match="no prediction files"):
        evaluate_folder(tmp_path / "ref", tmp_path / "ref", {**DATASET_JSON, "file_ending": ".mha"})


def test_evaluate_command(tmp_path, capsys):
    from toolkit.cli import main

    pred_dir, ref_dir, _, _ = _write_folder_pair(tmp_path)
    ds_path = tmp_path / "dataset.json"
    ds_path.write_text(json.dumps(DATASET_JSON))
    out = tmp_path / "out" / "summary.json"
    with pytest.raises(SystemExit) as exc:
        main(["evaluate", str(pred_dir), str(ref_dir), "--dataset-json", str(ds_path), "-o", str(out),
              "--tolerance-mm", "0.5", "-j", "1"])
    assert exc.value.code == 0
    captured = capsys.readouterr()
    assert "organ" in captured.out and "foreground mean" in captured.out
    summary = json.loads(out.read_text())
    assert summary["tolerance_mm"] == 0.5 and len(summary["per_case"]) == 2
    # bad input: one line on stderr, exit code 2, no traceback
    write_image(np.zeros((6, 8, 8), np.uint8), _geo((1.0, 1.0, 1.0)), pred_dir / "a.nii.gz")
    with pytest.raises(SystemExit) as exc:
        main(["evaluate", str(pred_dir), str(ref_dir), "--dataset-json", str(ds_path), "-j", "1"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "segkit: error:" in err and "geometry" in err and "Traceback" not in err


@pytest.mark.shared_data
def test_real_kits_label_shifted_by_two_voxels(shared_data):
    """A real KiTS19 tumour label shifted by 2 voxels along each axis: HD95 is 2 voxels in that axis' mm."""
    from toolkit.io.images import read_image

    ref, geo = read_image(shared_data / "KiTS19_segmentations_only/data/case_00002/segmentation.nii.gz")
    ref = (ref == 2).astype(np.uint8)
    for axis, spacing in enumerate(geo.spacing):
        pred = np.roll(ref, 2, axis=axis)
        m = case_metrics(pred, ref, [1], geo.spacing, tolerance_mm=2 * spacing)["1"]
        assert m["HD95"] == pytest.approx(2 * spacing)
        assert m["NSD"] == 1.0 and 0.5 < m["Dice"] < 1.0
        assert m["volume_ref_mm3"] == pytest.approx(ref.sum() * float(np.prod(geo.spacing)))
