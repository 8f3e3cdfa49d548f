"""chaos adapter on a CHAOS-layout miniature built from the real TCIA series, with shuffled file names.

The challenge pairs the k-th DICOM file by name with the k-th ground-truth PNG by name; here the
names are a random permutation of the slice positions, so a reader that stacks by file name (or a
pairing that ignores names) gives a scrambled volume and wrong labels.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from challenge_helpers import convert_checked
from PIL import Image

from challenges.convert import make_submission
from challenges.registry import get_adapter
from toolkit.io.images import read_image, write_image

STUDY = "TCIA_BrainTumorProgression_DICOM/PGBM-001/11-19-1991-FH-HEADBrain Protocols-40993"
GREY = {1: 63, 2: 126, 3: 189, 4: 252}


def _physical(folder: Path) -> tuple[list[str], sitk.Image]:
    """The independent expectation: GDCM's position sorting and SimpleITK's series reader."""
    names = list(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder)))
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(names)
    return names, reader.Execute()


@pytest.fixture(scope="module")
def tcia(shared_data) -> dict:
    study = shared_data / STUDY
    if not study.is_dir():
        pytest.skip(f"real data not available: {study} is absent")
    series = {k: _physical(study / name) for k, name in
              (("t1", "11-T1post-03326"), ("flair", "35637-FLAIRreg-16386"), ("mask", "5364-MaskTumor-94345"))}
    labels = sitk.GetArrayFromImage(series["mask"][1]).astype(np.uint8)  # tumour -> "liver" (1)
    for k in range(labels.shape[0]):  # a per-slice pattern, so any slice mix-up changes the labels
        labels[k, : k + 1, -6:] = 4
        labels[k, -10:, : 3 * k + 1] = 2
    return {"series": series, "labels": labels}


def _write_series(names: list[str], target: Path, name_of) -> None:
    target.mkdir(parents=True)
    for k, src in enumerate(names):  # names are in physical order; slice k gets the name name_of(k)
        shutil.copy(src, target / name_of(k))


def _write_ground(labels: np.ndarray, perm: np.ndarray, ground: Path, name_of) -> None:
    ground.mkdir(parents=True)
    rng = np.random.default_rng(7)
    for k, plane in enumerate(labels):
        grey = np.vectorize(lambda v: GREY.get(int(v), 0))(plane) + np.where(plane > 0, rng.integers(-5, 4, plane.shape), 0)
        Image.fromarray(grey.clip(0, 255).astype(np.uint8)).save(ground / name_of(perm[k]))


def _patient(root: Path, tcia: dict, rng, labelled: bool) -> dict[str, np.ndarray]:
    """One CHAOS patient: T1 in/out phase share one name permutation (one Ground folder), T2 its own."""
    n = tcia["labels"].shape[0]
    perms = {"T1": rng.permutation(n), "T2": rng.permutation(n)}
    for perm in perms.values():
        assert not np.array_equal(perm, np.arange(n)) and not np.array_equal(perm, np.arange(n)[::-1])
    t1, t2 = perms["T1"], perms["T2"]
    _write_series(tcia["series"]["t1"][0], root / "T1DUAL/DICOM_anon/InPhase", lambda k: f"IMG-0004-{2 * t1[k] + 2:05d}.dcm")
    _write_series(tcia["series"]["flair"][0], root / "T1DUAL/DICOM_anon/OutPhase", lambda k: f"IMG-0004-{2 * t1[k] + 1:05d}.dcm")
    _write_series(tcia["series"]["t1"][0], root / "T2SPIR/DICOM_anon", lambda k: f"IMG-0002-{t2[k] + 1:05d}.dcm")
    if labelled:
        _write_ground(tcia["labels"], t1, root / "T1DUAL/Ground", lambda j: f"IMG-0004-{2 * j + 2:05d}.png")
        _write_ground(tcia["labels"], t2, root / "T2SPIR/Ground", lambda j: f"IMG-0002-{j + 1:05d}.png")
    return perms


@pytest.fixture(scope="module")
def chaos_real(tcia, tmp_path_factory) -> tuple[Path, Path, dict]:
    raw = tmp_path_factory.mktemp("chaos_real") / "CHAOS"
    rng = np.random.default_rng(11)
    perms = {"1": _patient(raw / "Train_Sets/MR/1", tcia, rng, True),
             "31": _patient(raw / "Test_Sets/MR/31", tcia, rng, False)}
    out = raw.parent / "Dataset038_CHAOS"
    convert_checked("chaos", raw, out)
    return raw, out, perms


def test_volumes_in_physical_order_with_the_tags_geometry(chaos_real, tcia):
    _, out, _ = chaos_real
    for case, source, split in (("1_T1in", "t1", "Tr"), ("1_T1out", "flair", "Tr"), ("1_T2", "t1", "Tr"),
                                ("31_T1in", "t1", "Ts"), ("31_T2", "t1", "Ts")):
        reference = tcia["series"][source][1]
        image, geometry = read_image(out / f"images{split}" / f"{case}_0000.nii.gz")
        assert np.array_equal(image, sitk.GetArrayFromImage(reference)), case
        assert geometry.spacing_xyz == pytest.approx(reference.GetSpacing(), rel=1e-6)  # 6.5 mm, not 0.27-6.19
        assert geometry.origin_xyz == pytest.approx(reference.GetOrigin(), abs=1e-4)
        assert geometry.direction == pytest.approx(reference.GetDirection(), abs=1e-6)


def test_ground_truth_paired_by_name_rank(chaos_real, tcia):
    _, out, _ = chaos_real
    for case in ("1_T1in", "1_T1out", "1_T2"):
        label, geometry = read_image(out / "labelsTr" / f"{case}.nii.gz")
        assert np.array_equal(label, tcia["labels"]), case
        assert geometry == read_image(out / "imagesTr" / f"{case}_0000.nii.gz")[1]


def test_slice_order_sidecar_is_the_name_rank(chaos_real):
    _, out, perms = chaos_real
    orders = json.loads((out / "chaos_slice_order.json").read_text(encoding="utf-8"))
    for patient, perm in perms.items():
        assert orders[f"{patient}_T1in"] == orders[f"{patient}_T1out"] == perm["T1"].tolist()
        assert orders[f"{patient}_T2"] == perm["T2"].tolist()


def test_submission_written_back_in_the_challenges_slice_order(chaos_real, tcia, tmp_path):
    _, out, perms = chaos_real
    labels = tcia["labels"]
    _, geometry = read_image(out / "imagesTs" / "31_T2_0000.nii.gz")
    pred = tmp_path / "pred"
    onehot = np.eye(5, dtype=np.float32)[labels].transpose(3, 0, 1, 2)
    for kind in ("T1in", "T1out"):
        write_image(labels, geometry, pred / f"31_{kind}.nii.gz")
        np.savez_compressed(pred / f"31_{kind}.npz", probabilities=onehot)
    write_image(labels, geometry, pred / "31_T2.nii.gz")
    make_submission(get_adapter("chaos", {"dataset": str(out)}), pred, tmp_path / "sub")
    for sequence, perm in (("T1DUAL", perms["31"]["T1"]), ("T2SPIR", perms["31"]["T2"])):
        folder = tmp_path / "sub" / "Task5" / "MR" / "31" / sequence / "Results"
        names = sorted(p.name for p in folder.iterdir())
        assert names == [f"img{j:03d}.png" for j in range(labels.shape[0])]
        for k in range(labels.shape[0]):  # physical slice k is the challenge's slice perm[k]
            grey = np.array(Image.open(folder / f"img{perm[k]:03d}.png"))
            want = np.vectorize(lambda v: GREY.get(int(v), 0))(labels[k])
            assert np.array_equal(grey, want), (sequence, k)
