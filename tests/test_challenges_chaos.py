"""chaos adapter: DICOM series + PNG ground truth in the CHAOS folder structure, PNG submission."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from challenge_helpers import convert_checked, groups
from PIL import Image

from challenges.convert import make_submission
from challenges.registry import get_adapter
from toolkit.errors import SegkitError
from toolkit.io.images import read_image, write_image

SHAPE = (4, 10, 12)  # slices, rows, columns
SPACING = (1.54, 1.54, 7.7)  # x, y, z (mm)
ORIGIN = (-190.0, -160.5, -70.0)
GREY = {1: 63, 2: 126, 3: 189, 4: 252}


def _write_series(folder: Path, volume: np.ndarray, names: list[str]) -> None:
    """A DICOM MR series, one file per slice, with positions along z (SimpleITK's DICOM writer)."""
    folder.mkdir(parents=True)
    img = sitk.GetImageFromArray(volume)
    img.SetSpacing(SPACING)
    img.SetOrigin(ORIGIN)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for k, name in enumerate(names):
        plane = img[:, :, k]
        position = img.TransformIndexToPhysicalPoint((0, 0, k))
        for tag, value in (("0008|0060", "MR"), ("0020|000e", f"1.2.826.0.1.3680043.2.1125.{abs(hash(str(folder))) % 10**8}"),
                           ("0020|0013", str(k + 1)), ("0020|0032", "\\".join(f"{v:.4f}" for v in position)),
                           ("0020|0037", "1\\0\\0\\0\\1\\0"), ("0018|0050", str(SPACING[2])),
                           ("0028|0030", f"{SPACING[1]}\\{SPACING[0]}")):
            plane.SetMetaData(tag, value)
        writer.SetFileName(str(folder / name))
        writer.Execute(plane)


def _patient(root: Path, pid: str, rng, labelled: bool) -> dict:
    base = root / pid
    truth = {}
    t1_labels = rng.integers(0, 5, SHAPE).astype(np.uint8)
    for kind, folder, names in (
        ("T1in", base / "T1DUAL" / "DICOM_anon" / "InPhase", [f"IMG-0004-{2 * k + 2:05d}.dcm" for k in range(SHAPE[0])]),
        ("T1out", base / "T1DUAL" / "DICOM_anon" / "OutPhase", [f"IMG-0004-{2 * k + 1:05d}.dcm" for k in range(SHAPE[0])]),
        ("T2", base / "T2SPIR" / "DICOM_anon", [f"IMG-0002-{k + 1:05d}.dcm" for k in range(SHAPE[0])]),
    ):
        volume = rng.integers(0, 1200, SHAPE).astype(np.int16)
        _write_series(folder, volume, names)
        truth[kind] = [volume, None]
    if labelled:
        t2_labels = rng.integers(0, 5, SHAPE).astype(np.uint8)
        for seq, labels, prefix in (("T1DUAL", t1_labels, "IMG-0004"), ("T2SPIR", t2_labels, "IMG-0002")):
            ground = base / seq / "Ground"
            ground.mkdir()
            noise = rng.integers(-5, 4, SHAPE)  # grey values inside each organ's range, not exact
            grey = np.where(labels > 0, np.vectorize(lambda v: GREY.get(v, 0))(labels) + noise, 0)
            for k, plane in enumerate(grey.clip(0, 255).astype(np.uint8)):
                Image.fromarray(plane).save(ground / f"{prefix}-{k + 1:05d}.png")
        truth["T1in"][1] = truth["T1out"][1] = t1_labels
        truth["T2"][1] = t2_labels
    return truth


@pytest.fixture
def chaos_raw(tmp_path) -> tuple[Path, dict]:
    rng = np.random.default_rng(0)
    raw = tmp_path / "CHAOS"
    truth = {}
    for split, pids, labelled in (("CHAOS_Train_Sets/Train_Sets", ("1", "2"), True),
                                  ("CHAOS_Test_Sets/Test_Sets", ("11",), False)):
        for pid in pids:
            truth[pid] = _patient(raw / split / "MR", pid, rng, labelled)
    (raw / "CHAOS_Train_Sets" / "Train_Sets" / "CT" / "1").mkdir(parents=True)  # CT tasks: ignored
    return raw, truth


def test_dicom_fixture_is_real_dicom(chaos_raw):
    raw, _ = chaos_raw
    ds = pydicom.dcmread(raw / "CHAOS_Train_Sets/Train_Sets/MR/1/T2SPIR/DICOM_anon/IMG-0002-00003.dcm")
    assert ds.Modality == "MR" and int(ds.InstanceNumber) == 3
    assert float(ds.ImagePositionPatient[2]) == pytest.approx(ORIGIN[2] + 2 * SPACING[2])


def test_chaos_convert(chaos_raw, tmp_path):
    raw, truth = chaos_raw
    out = tmp_path / "Dataset038_CHAOS"
    ds = convert_checked("chaos", raw, out)
    assert ds["numTraining"] == 6 and ds["numTest"] == 3
    assert groups(out) == {f"{p}_{k}": p for p in ("1", "2") for k in ("T1in", "T1out", "T2")}
    orders = json.loads((out / "chaos_slice_order.json").read_text(encoding="utf-8"))
    assert orders == {f"{p}_{k}": list(range(SHAPE[0])) for p in ("1", "2", "11") for k in ("T1in", "T1out", "T2")}
    for pid in ("1", "2", "11"):
        for kind, (volume, labels) in truth[pid].items():
            split = "Ts" if labels is None else "Tr"
            image, geo = read_image(out / f"images{split}" / f"{pid}_{kind}_0000.nii.gz")
            assert np.array_equal(image, volume)
            assert np.allclose(geo.spacing_xyz, SPACING) and np.allclose(geo.origin_xyz, ORIGIN)
            if labels is not None:
                label, lgeo = read_image(out / "labelsTr" / f"{pid}_{kind}.nii.gz")
                assert np.array_equal(label, labels) and lgeo == geo


def test_chaos_png_count_mismatch_is_an_error(chaos_raw, tmp_path):
    raw, _ = chaos_raw
    pngs = sorted((raw / "CHAOS_Train_Sets/Train_Sets/MR/2/T2SPIR/Ground").glob("*.png"))
    pngs[-1].unlink()
    from challenges.convert import convert

    with pytest.raises(SegkitError, match="3 ground-truth PNGs for 4 DICOM slices"):
        convert(get_adapter("chaos"), raw, tmp_path / "out")


def test_chaos_submission_averages_t1_and_writes_png_folders(tmp_path):
    rng = np.random.default_rng(1)
    from toolkit.io.images import Geometry

    geo = Geometry(SPACING, ORIGIN, (1, 0, 0, 0, 1, 0, 0, 0, 1))
    pred = tmp_path / "pred"
    p_in, p_out = rng.dirichlet(np.ones(5), SHAPE).transpose(3, 0, 1, 2), rng.dirichlet(np.ones(5), SHAPE).transpose(3, 0, 1, 2)
    for kind, prob in (("T1in", p_in), ("T1out", p_out)):
        write_image(prob.argmax(0).astype(np.uint8), geo, pred / f"11_{kind}.nii.gz")
        np.savez_compressed(pred / f"11_{kind}.npz", probabilities=prob.astype(np.float32))
    t2 = rng.integers(0, 5, SHAPE).astype(np.uint8)
    write_image(t2, geo, pred / "11_T2.nii.gz")
    dataset = tmp_path / "dataset"  # names in position order here: the challenge order is the identity
    dataset.mkdir()
    identity = list(range(SHAPE[0]))
    (dataset / "chaos_slice_order.json").write_text(json.dumps({"11_T1in": identity, "11_T1out": identity,
                                                                "11_T2": identity}), encoding="utf-8")
    out = tmp_path / "submission"
    written = make_submission(get_adapter("chaos", {"dataset": str(dataset)}), pred, out)
    assert len(written) == 2 * 2 * SHAPE[0]
    expected_t1 = ((p_in.astype(np.float32) + p_out.astype(np.float32)) / 2).argmax(0)
    assert not np.array_equal(expected_t1, p_in.argmax(0))  # averaging matters in this fixture
    for seq, labels in (("T1DUAL", expected_t1), ("T2SPIR", t2)):
        for task, keep in (("Task5", [1, 2, 3, 4]), ("Task3", [1])):
            folder = out / task / "MR" / "11" / seq / "Results"
            names = sorted(p.name for p in folder.iterdir())
            assert names == [f"img{k:03d}.png" for k in range(SHAPE[0])]
            grey = np.stack([np.array(Image.open(folder / n)) for n in names])
            want = np.zeros(SHAPE, np.uint8)
            for value in keep:
                want[labels == value] = GREY[value]
            assert grey.dtype == np.uint8 and np.array_equal(grey, want), (task, seq)


def test_chaos_submission_needs_the_slice_order(tmp_path):
    from toolkit.io.images import Geometry

    pred = tmp_path / "pred"
    write_image(np.zeros(SHAPE, np.uint8), Geometry(SPACING, ORIGIN, (1, 0, 0, 0, 1, 0, 0, 0, 1)), pred / "3_T2.nii.gz")
    with pytest.raises(SegkitError, match="-O dataset="):
        make_submission(get_adapter("chaos"), pred, tmp_path / "out")
    with pytest.raises(SegkitError, match="chaos_slice_order.json: not found"):
        make_submission(get_adapter("chaos", {"dataset": str(tmp_path)}), pred, tmp_path / "out")


def test_natural_png_order():
    from challenges.chaos import natural_key

    names = ["img10.png", "img9.png", "img100.png", "img1.png"]
    assert sorted(names, key=natural_key) == ["img1.png", "img9.png", "img10.png", "img100.png"]


def test_chaos_submission_needs_probabilities(tmp_path):
    from toolkit.io.images import Geometry

    pred = tmp_path / "pred"
    write_image(np.zeros(SHAPE, np.uint8), Geometry(SPACING, ORIGIN, (1, 0, 0, 0, 1, 0, 0, 0, 1)), pred / "3_T1in.nii.gz")
    (tmp_path / "chaos_slice_order.json").write_text('{"3_T1in": [0, 1, 2, 3]}', encoding="utf-8")
    with pytest.raises(SegkitError, match="--save-probabilities"):
        make_submission(get_adapter("chaos", {"dataset": str(tmp_path)}), pred, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_chaos_in_and_out_phase_must_share_the_slice_order(chaos_raw, tmp_path):
    """One T1 Ground folder labels both phases: their name order must put the same positions first."""
    raw, _ = chaos_raw
    out_phase = raw / "CHAOS_Train_Sets/Train_Sets/MR/2/T1DUAL/DICOM_anon/OutPhase"
    first, last = sorted(out_phase.glob("*.dcm"))[0], sorted(out_phase.glob("*.dcm"))[-1]
    first.rename(out_phase / "tmp.dcm")
    last.rename(first)
    (out_phase / "tmp.dcm").rename(last)
    from challenges.convert import convert

    with pytest.raises(SegkitError, match="in- and out-phase series do not share their slices"):
        convert(get_adapter("chaos"), raw, tmp_path / "out")
