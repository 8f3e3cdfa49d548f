"""File-based adapters (acdc, lits, bcv, promise12, segthor, msles) on miniature raw downloads.

Each fixture rebuilds the challenge's original layout (folder and file names, dtypes, Info.cfg text,
.mhd/.raw pairs) with small random volumes on a non-trivial grid (anisotropic spacing, an origin,
a rotated direction); the tests check verify, labels, geometry, groups and the submission round trip.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from challenge_helpers import convert_checked, groups, submission_roundtrip, write_raw

from challenges.convert import convert
from challenges.registry import get_adapter
from toolkit.errors import SegkitError
from toolkit.io.images import read_image

SHAPE = (5, 12, 14)  # z, y, x
SPACING = (1.5625, 1.5625, 10.0)
ORIGIN = (-120.5, 33.25, 7.0)
DIRECTION = (0.0, 1.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0, 1.0)


def _pair(rng, image_path: Path, label_path: Path | None, n_labels: int, image_dtype=np.int16,
          label_dtype=np.uint8, compress=True):
    image = rng.integers(-100, 400, SHAPE).astype(image_dtype)
    write_raw(image_path, image, SPACING, ORIGIN, DIRECTION, compress)
    if label_path is None:
        return image, None
    label = rng.integers(0, n_labels + 1, SHAPE).astype(label_dtype)
    write_raw(label_path, label, SPACING, ORIGIN, DIRECTION, compress)
    return image, label


def _check_case(out: Path, case_id: str, image: np.ndarray, label: np.ndarray | None, ending=".nii.gz"):
    got, geo = read_image(out / ("imagesTr" if label is not None else "imagesTs") / f"{case_id}_0000{ending}")
    assert np.array_equal(got, image) and got.dtype == image.dtype
    assert geo.spacing_xyz == SPACING and geo.origin_xyz == ORIGIN
    assert np.allclose(geo.direction, DIRECTION)
    if label is not None:
        lab, lgeo = read_image(out / "labelsTr" / f"{case_id}{ending}")
        assert np.array_equal(lab, label) and lab.dtype == np.uint8 and lgeo == geo
    return got, geo


def _pred(rng, geo, n_labels):
    return rng.integers(0, n_labels + 1, SHAPE).astype(np.uint8), geo


# -- ACDC -----------------------------------------------------------------------------------------

def _acdc(raw: Path, rng) -> dict:
    truth = {}
    for split, number, ed, es, with_gt in (("training", 1, 1, 12, True), ("training", 2, 1, 9, True),
                                           ("testing", 101, 1, 14, False)):
        folder = raw / split / f"patient{number:03d}"
        folder.mkdir(parents=True)
        info = f"ED: {ed}\nES: {es}\nGroup: DCM\nHeight: 184.0\nNbFrame: 30\nWeight: 95.0\n"
        (folder / "Info.cfg").write_text(info if with_gt else info.replace("Group: DCM\n", ""))
        write_raw(folder / f"patient{number:03d}_4d.nii.gz", np.zeros((3, *SHAPE), np.int16))
        for phase, frame in (("ED", ed), ("ES", es)):
            stem = folder / f"patient{number:03d}_frame{frame:02d}"
            gt = stem.with_name(stem.name + "_gt.nii.gz") if with_gt else None
            truth[f"patient{number:03d}_{phase}"] = _pair(rng, stem.with_name(stem.name + ".nii.gz"), gt, 3)
        # a frame that is neither ED nor ES must be ignored
        write_raw(folder / f"patient{number:03d}_frame05.nii.gz", np.zeros(SHAPE, np.int16))
    return truth


def test_acdc(tmp_path):
    rng = np.random.default_rng(0)
    truth = _acdc(tmp_path / "raw", rng)
    out = tmp_path / "Dataset027_ACDC"
    ds = convert_checked("acdc", tmp_path / "raw", out)
    assert ds["labels"] == {"background": 0, "RV": 1, "MYO": 2, "LV": 3} and ds["numTraining"] == 4
    assert groups(out) == {"patient001_ED": "patient001", "patient001_ES": "patient001",
                           "patient002_ED": "patient002", "patient002_ES": "patient002"}
    geo = None
    for case_id, (image, label) in truth.items():
        _, geo = _check_case(out, case_id, image, label)
    preds = {c: _pred(rng, geo, 3) for c in ("patient101_ED", "patient101_ES")}
    submission_roundtrip("acdc", preds, {c: f"{c}.nii.gz" for c in preds}, tmp_path)


def test_acdc_rerelease_with_test_labels_keeps_test_patients_as_test(tmp_path):
    """A re-release that ships testing/ with _gt files: the folder, not the _gt files, decides the split."""
    rng = np.random.default_rng(5)
    raw = tmp_path / "raw" / "database"
    truth = _acdc(raw, rng)
    folder = raw / "testing" / "patient101"
    for frame in (1, 14):  # the test labels the re-release ships
        write_raw(folder / f"patient101_frame{frame:02d}_gt.nii.gz", np.ones(SHAPE, np.uint8), SPACING, ORIGIN, DIRECTION)
    out = tmp_path / "Dataset027_ACDC"
    ds = convert_checked("acdc", tmp_path / "raw", out)
    assert ds["numTraining"] == 4 and ds["numTest"] == 2
    assert sorted(p.name for p in (out / "imagesTs").iterdir()) == ["patient101_ED_0000.nii.gz",
                                                                    "patient101_ES_0000.nii.gz"]
    assert not any("patient101" in p.name for p in (out / "labelsTr").iterdir())
    _check_case(out, "patient101_ED", truth["patient101_ED"][0], None)


def test_acdc_training_patient_without_gt_is_an_error(tmp_path):
    rng = np.random.default_rng(6)
    _acdc(tmp_path / "raw", rng)
    (tmp_path / "raw" / "training" / "patient002" / "patient002_frame09_gt.nii.gz").unlink()
    with pytest.raises(SegkitError, match="training patient without its ground truth patient002_frame09_gt"):
        convert(get_adapter("acdc"), tmp_path / "raw", tmp_path / "out")


def test_acdc_patients_outside_training_testing_are_an_error(tmp_path):
    rng = np.random.default_rng(6)
    _acdc(tmp_path / "raw", rng)
    (tmp_path / "raw" / "training").rename(tmp_path / "raw" / "patients")
    with pytest.raises(SegkitError, match="expected it under training/ or testing/"):
        convert(get_adapter("acdc"), tmp_path / "raw", tmp_path / "out")


def test_acdc_bad_info_cfg(tmp_path):
    folder = tmp_path / "raw" / "training" / "patient001"
    folder.mkdir(parents=True)
    (folder / "Info.cfg").write_text("Group: DCM\n")
    with pytest.raises(SegkitError, match="expected 'ED: <frame>'"):
        convert(get_adapter("acdc"), tmp_path / "raw", tmp_path / "out")


# -- LiTS -----------------------------------------------------------------------------------------

def test_lits(tmp_path):
    rng = np.random.default_rng(1)
    raw = tmp_path / "raw"
    truth = {}
    for batch, n in (("Training Batch 1", 0), ("Training Batch 1", 1), ("Training Batch 2", 28)):
        truth[f"volume-{n}"] = _pair(rng, raw / batch / f"volume-{n}.nii", raw / batch / f"segmentation-{n}.nii",
                                     2, label_dtype=np.uint8, compress=False)
    # float-stored segmentation (seen in LiTS downloads): read, checked integral, cast to uint8
    image, label = _pair(rng, raw / "Training Batch 2" / "volume-29.nii", None, 2, compress=False)
    label = rng.integers(0, 3, SHAPE).astype(np.uint8)
    write_raw(raw / "Training Batch 2" / "segmentation-29.nii", label.astype(np.float32), SPACING, ORIGIN,
              DIRECTION, compress=False)
    truth["volume-29"] = (image, label)
    truth["test-volume-7"] = _pair(rng, raw / "Test" / "test-volume-7.nii", None, 2, compress=False)
    out = tmp_path / "Dataset029_LiTS"
    ds = convert_checked("lits", raw, out)
    assert ds["file_ending"] == ".nii" and ds["numTraining"] == 4 and ds["numTest"] == 1
    geo = None
    for case_id, (image, lab) in truth.items():
        _, geo = _check_case(out, case_id, image, lab, ending=".nii")
    assert (out / "imagesTr" / "volume-0_0000.nii").read_bytes() == (raw / "Training Batch 1" / "volume-0.nii").read_bytes()
    submission_roundtrip("lits", {"test-volume-7": _pred(rng, geo, 2)}, {"test-volume-7": "test-segmentation-7.nii"},
                         tmp_path)


def test_lits_rejects_undeclared_label_values(tmp_path):
    rng = np.random.default_rng(2)
    raw = tmp_path / "raw"
    image, _ = _pair(rng, raw / "volume-0.nii", None, 2, compress=False)
    write_raw(raw / "segmentation-0.nii", np.full(SHAPE, 7, np.float32), SPACING, ORIGIN, DIRECTION, False)
    with pytest.raises(SegkitError, match=r"value\(s\) \[7\] not in"):
        convert(get_adapter("lits"), raw, tmp_path / "out")
    assert not (tmp_path / "out").exists()


# -- BCV ------------------------------------------------------------------------------------------

def test_bcv(tmp_path):
    rng = np.random.default_rng(3)
    base = tmp_path / "raw" / "RawData"
    truth = {f"img{n:04d}": _pair(rng, base / "Training" / "img" / f"img{n:04d}.nii.gz",
                                  base / "Training" / "label" / f"label{n:04d}.nii.gz", 13) for n in (1, 2)}
    truth["img0061"] = _pair(rng, base / "Testing" / "img" / "img0061.nii.gz", None, 13)
    out = tmp_path / "Dataset017_BCV"
    ds = convert_checked("bcv", tmp_path / "raw", out)
    assert len(ds["labels"]) == 14 and ds["labels"]["left adrenal gland"] == 13
    geo = None
    for case_id, (image, label) in truth.items():
        _, geo = _check_case(out, case_id, image, label)
    submission_roundtrip("bcv", {"img0061": _pred(rng, geo, 13)}, {"img0061": "label0061.nii.gz"}, tmp_path)


# -- PROMISE12 ------------------------------------------------------------------------------------

def test_promise12(tmp_path):
    rng = np.random.default_rng(4)
    raw = tmp_path / "raw"
    truth = {}
    for part, n in (("TrainingData_Part1", 0), ("TrainingData_Part2", 17)):
        truth[f"Case{n:02d}"] = _pair(rng, raw / part / f"Case{n:02d}.mhd", raw / part / f"Case{n:02d}_segmentation.mhd",
                                      1, compress=False)
    truth["test_Case00"] = _pair(rng, raw / "TestData" / "Case00.mhd", None, 1, compress=False)
    assert (raw / "TestData" / "Case00.raw").is_file()
    out = tmp_path / "Dataset024_Promise"
    convert_checked("promise12", raw, out)
    geo = None
    for case_id, (image, label) in truth.items():
        _, geo = _check_case(out, case_id, image, label)
    # named like the test image, as nnU-Net's Task024_Promise2012.export_for_submission does
    sub = submission_roundtrip("promise12", {"test_Case00": _pred(rng, geo, 1)},
                               {"test_Case00": "Case00.mhd"}, tmp_path / "s")
    assert sorted(p.name for p in sub.iterdir()) == ["Case00.mhd", "Case00.raw"]
    header = (sub / "Case00.mhd").read_text(encoding="utf-8")
    assert "CompressedData = False" in header and "ElementDataFile = Case00.raw" in header


# -- SegTHOR --------------------------------------------------------------------------------------

def test_segthor(tmp_path):
    rng = np.random.default_rng(5)
    raw = tmp_path / "raw"
    truth = {f"Patient_{n:02d}": _pair(rng, raw / "train" / f"Patient_{n:02d}" / f"Patient_{n:02d}.nii.gz",
                                       raw / "train" / f"Patient_{n:02d}" / "GT.nii.gz", 4) for n in (1, 2)}
    truth["Patient_41"] = _pair(rng, raw / "test" / "Patient_41.nii.gz", None, 4)
    out = tmp_path / "Dataset055_SegTHOR"
    ds = convert_checked("segthor", raw, out)
    assert ds["labels"] == {"background": 0, "esophagus": 1, "heart": 2, "trachea": 3, "aorta": 4}
    geo = None
    for case_id, (image, label) in truth.items():
        _, geo = _check_case(out, case_id, image, label)
    sub = submission_roundtrip("segthor", {"Patient_41": _pred(rng, geo, 4)}, {"Patient_41": "Patient_41.nii"},
                               tmp_path)
    assert (sub / "Patient_41.nii").read_bytes()[344:348] == b"n+1\x00"  # uncompressed single-file NIfTI


# -- ISBI 2015 MS lesions -------------------------------------------------------------------------

MODS = ("flair", "mprage", "pd", "t2")


def _msles(raw: Path, rng) -> dict:
    truth = {}
    for split, patient, times in (("training", "training01", (1, 2)), ("training", "training02", (1,)),
                                  ("testdata_website", "test01", (1, 2))):
        for t in times:
            stem = f"{patient}_{t:02d}"
            pre = raw / split / patient / "preprocessed"
            images = [rng.normal(size=SHAPE).astype(np.float32) for _ in MODS]
            for mod, img in zip(MODS, images, strict=True):
                write_raw(pre / f"{stem}_{mod}_pp.nii", img, SPACING, ORIGIN, DIRECTION, compress=False)
            write_raw(raw / split / patient / "orig" / f"{stem}_flair.nii.gz", images[0])  # ignored
            masks = []
            if split == "training":
                for k in (1, 2):
                    mask = (rng.random(SHAPE) > 0.8).astype(np.uint8)
                    write_raw(raw / split / patient / "masks" / f"{stem}_mask{k}.nii", mask, SPACING, ORIGIN,
                              DIRECTION, compress=False)
                    masks.append(mask)
            truth[stem] = (images, masks)
    return truth


def test_msles(tmp_path):
    rng = np.random.default_rng(6)
    truth = _msles(tmp_path / "raw", rng)
    out = tmp_path / "Dataset035_MSLesions"
    ds = convert_checked("msles", tmp_path / "raw", out)
    assert ds["channel_names"] == {"0": "FLAIR", "1": "MPRAGE", "2": "PD", "3": "T2"} and ds["numTraining"] == 6
    assert groups(out) == {f"{tp}_mask{k}": tp[:10] for tp in ("training01_01", "training01_02", "training02_01")
                           for k in (1, 2)}
    for stem, (images, masks) in truth.items():
        for k, mask in enumerate(masks, start=1):
            for c, img in enumerate(images):
                got, _ = read_image(out / "imagesTr" / f"{stem}_mask{k}_{c:04d}.nii.gz")
                assert np.array_equal(got, img)
            lab, _ = read_image(out / "labelsTr" / f"{stem}_mask{k}.nii.gz")
            assert np.array_equal(lab, mask)
    _, geo = read_image(out / "imagesTs" / "test01_02_0003.nii.gz")
    assert geo.spacing_xyz == SPACING and geo.origin_xyz == ORIGIN
    preds = {c: _pred(rng, geo, 1) for c in ("test01_01", "test01_02")}
    submission_roundtrip("msles", preds, {"test01_01": "test01_01_myteam.nii", "test01_02": "test01_02_myteam.nii"},
                         tmp_path, **{"names.team": "myteam"})


def test_wrong_layout_names_expected_and_found(tmp_path):
    (tmp_path / "raw" / "Patient_01").mkdir(parents=True)
    for name in ("segthor", "bcv", "msles", "promise12", "lits", "acdc"):
        with pytest.raises(SegkitError) as err:
            convert(get_adapter(name), tmp_path / "raw", tmp_path / "out")
        assert f"not a {name} download: expected " in str(err.value) and "found Patient_01/" in str(err.value)


def test_interrupted_conversion_resumes_and_leaves_no_partial_dataset(tmp_path, monkeypatch):
    import challenges.convert as conv

    rng = np.random.default_rng(7)
    raw = tmp_path / "raw"
    for n in (1, 2, 3):
        _pair(rng, raw / "train" / f"Patient_{n:02d}" / f"Patient_{n:02d}.nii.gz",
              raw / "train" / f"Patient_{n:02d}" / "GT.nii.gz", 4)
    out = tmp_path / "out"
    real_write, calls = conv.write_case, []

    def crash_on_third(case, *args):
        calls.append(case.id)
        if len(calls) == 3:
            raise KeyboardInterrupt
        real_write(case, *args)

    monkeypatch.setattr(conv, "write_case", crash_on_third)
    with pytest.raises(KeyboardInterrupt):
        convert(get_adapter("segthor"), raw, out)
    assert not out.exists()  # nothing under the final name
    partial = tmp_path / ".out.partial" / "imagesTr" / "Patient_01_0000.nii.gz"
    stamp = partial.stat().st_mtime_ns
    monkeypatch.setattr(conv, "write_case", real_write)
    convert(get_adapter("segthor"), raw, out)
    assert (out / "imagesTr" / "Patient_01_0000.nii.gz").stat().st_mtime_ns == stamp  # kept, not rewritten
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "raw"]


def test_promise12_splits_train_and_test_by_folder_not_by_label_presence(tmp_path):
    """A re-release that ships test labels keeps its test cases as test cases; a training case without
    its label is an error, as is an image outside TrainingData*/TestData*."""
    rng = np.random.default_rng(14)
    raw = tmp_path / "raw"
    _pair(rng, raw / "TrainingData_Part1" / "Case01.mhd", raw / "TrainingData_Part1" / "Case01_segmentation.mhd",
          1, compress=False)
    _pair(rng, raw / "TestData" / "Case00.mhd", raw / "TestData" / "Case00_segmentation.mhd", 1, compress=False)
    out = tmp_path / "Dataset024_Promise"
    convert_checked("promise12", raw, out)
    assert sorted(p.name for p in (out / "imagesTs").iterdir()) == ["test_Case00_0000.nii.gz"]
    assert sorted(p.name for p in (out / "labelsTr").iterdir()) == ["Case01.nii.gz"]

    (raw / "TrainingData_Part1" / "Case01_segmentation.mhd").unlink()
    with pytest.raises(SegkitError, match="training case without its ground truth Case01_segmentation.mhd"):
        convert(get_adapter("promise12"), raw, tmp_path / "o2")

    stray = tmp_path / "stray"
    _pair(rng, stray / "misc" / "Case02.mhd", stray / "misc" / "Case02_segmentation.mhd", 1, compress=False)
    with pytest.raises(SegkitError, match=r"TrainingData_Part\*/ or TestData/"):
        convert(get_adapter("promise12"), stray, tmp_path / "o3")
