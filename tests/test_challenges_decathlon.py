"""decathlon adapter: real MSD Hippocampus, a BraTS-derived 4D BrainTumour-like task, ._ junk files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from challenge_helpers import assert_same_image, convert_checked, groups, submission_roundtrip

from challenges.convert import convert
from challenges.registry import get_adapter
from toolkit.errors import SegkitError
from toolkit.io.images import read_image


def test_real_hippocampus(hippocampus_msd, tmp_path):
    out = tmp_path / "Dataset004_Hippocampus"
    ds = convert_checked("decathlon", hippocampus_msd, out)
    assert ds["numTraining"] == 195 and ds["numTest"] == 1
    assert ds["labels"] == {"background": 0, "Anterior": 1, "Posterior": 2}
    assert ds["channel_names"] == {"0": "MRI"} and ds["licence"] == "CC-BY-SA 4.0"
    assert (out / "imagesTs" / "hippocampus_118_0000.nii.gz").is_file()
    for case in ("hippocampus_001", "hippocampus_394"):
        assert_same_image(hippocampus_msd / "imagesTr" / f"{case}.nii.gz", out / "imagesTr" / f"{case}_0000.nii.gz")
        assert_same_image(hippocampus_msd / "labelsTr" / f"{case}.nii.gz", out / "labelsTr" / f"{case}.nii.gz")
    assert groups(out)["hippocampus_001"] == "hippocampus_001"
    pred = read_image(hippocampus_msd / "labelsTr" / "hippocampus_001.nii.gz")
    submission_roundtrip("decathlon", {"hippocampus_118": pred}, {"hippocampus_118": "hippocampus_118.nii.gz"},
                         tmp_path)


BRATS = "BraTS2015_deepmedic_examples/examples/dataForExamples/brats2015TrainingData"
MODALITIES = {"0": "FLAIR", "1": "T1w", "2": "t1gd", "3": "T2w"}


def _brats_like_task(shared_data: Path, root: Path) -> dict[str, np.ndarray]:
    """An MSD Task01_BrainTumour-like folder from the real BraTS examples, cropped to keep it fast.

    MSD stacks FLAIR, T1w, T1gd, T2w as the 4th NIfTI dimension; the examples only have FLAIR and
    T1c, so channel 1 is T1c and channel 3 is FLAIR again (clearly a stand-in, but real intensities).
    Labels follow MSD: 1 edema (BRATS 2), 2 non-enhancing (BRATS 1, 3), 3 enhancing (BRATS 4).
    """
    src = shared_data / BRATS
    cases = sorted(p for p in (src / "train").iterdir()) + sorted(p for p in (src / "validation").iterdir())
    meta = {"name": "BRATS", "description": "Gliomas", "reference": "BRATS 2015 via DeepMedic examples",
            "licence": "CC-BY-NC-SA 3.0", "release": "test", "tensorImageSize": "4D", "modality": MODALITIES,
            "labels": {"0": "background", "1": "edema", "2": "non-enhancing tumor", "3": "enhancing tumour"},
            "training": [], "test": []}
    truth = {}
    for i, case in enumerate(cases, start=1):
        crop = (slice(60, 100), slice(70, 150), slice(60, 140))  # z, y, x
        read = {m: sitk.ReadImage(str(case / f"{m}.nii.gz"))[60:140, 70:150, 60:100]
                for m in ("Flair_subtrMeanDivStd", "T1c_subtrMeanDivStd", "OTMultiClass")}
        flair, t1c = read["Flair_subtrMeanDivStd"], read["T1c_subtrMeanDivStd"]
        image = sitk.JoinSeries([flair, t1c, t1c, flair])
        name = f"BRATS_{i:03d}"
        sitk.WriteImage(image, str(root / ("imagesTr" if i <= 3 else "imagesTs") / f"{name}.nii.gz"))
        if i <= 3:
            brats = sitk.GetArrayFromImage(read["OTMultiClass"]).astype(np.int64)
            msd = np.select([brats == 2, (brats == 1) | (brats == 3), brats == 4], [1, 2, 3], 0).astype(np.uint8)
            label = sitk.GetImageFromArray(msd)
            label.CopyInformation(flair)
            sitk.WriteImage(label, str(root / "labelsTr" / f"{name}.nii.gz"))
            meta["training"].append({"image": f"./imagesTr/{name}.nii.gz", "label": f"./labelsTr/{name}.nii.gz"})
            truth[name] = msd
        else:
            meta["test"].append(f"./imagesTs/{name}.nii.gz")
        assert sitk.GetArrayFromImage(flair).shape == tuple(s.stop - s.start for s in crop)
    (root / "dataset.json").write_text(json.dumps(meta))
    (root / "imagesTr" / "._BRATS_001.nii.gz").write_bytes(b"\x00\x05\x16\x07 macOS resource fork")
    (root / "imagesTs" / "._BRATS_004.nii.gz").write_bytes(b"\x00\x05\x16\x07")
    return truth


@pytest.fixture
def brats_task(shared_data, tmp_path) -> tuple[Path, dict]:
    root = tmp_path / "Task01_BrainTumour"
    for sub in ("imagesTr", "labelsTr", "imagesTs"):
        (root / sub).mkdir(parents=True)
    return root, _brats_like_task(shared_data, root)


def test_brats_like_4d_split_into_channels(brats_task, tmp_path, shared_data):
    raw, truth = brats_task
    out = tmp_path / "Dataset001_BrainTumour"
    ds = convert_checked("decathlon", raw, out)
    assert ds["channel_names"] == MODALITIES and ds["numTraining"] == 3 and ds["numTest"] == 1
    four_d = sitk.ReadImage(str(raw / "imagesTr" / "BRATS_002.nii.gz"))
    assert four_d.GetDimension() == 4
    for c in range(4):
        channel, geo = read_image(out / "imagesTr" / f"BRATS_002_{c:04d}.nii.gz")
        assert np.array_equal(channel, sitk.GetArrayFromImage(four_d)[c])
        assert geo.spacing_xyz == four_d.GetSpacing()[:3] and geo.origin_xyz == four_d.GetOrigin()[:3]
    flair_src = sitk.ReadImage(str(shared_data / BRATS / "train/brats_2013_pat0006_1/Flair_subtrMeanDivStd.nii.gz"))
    _, geo = read_image(out / "imagesTr" / "BRATS_002_0000.nii.gz")
    assert np.allclose(geo.origin_xyz, flair_src.TransformIndexToPhysicalPoint((60, 70, 60)))
    label, label_geo = read_image(out / "labelsTr" / "BRATS_002.nii.gz")
    assert np.array_equal(label, truth["BRATS_002"]) and label_geo == geo
    assert sorted(p.name for p in (out / "imagesTs").iterdir()) == [f"BRATS_004_{c:04d}.nii.gz" for c in range(4)]
    assert set(groups(out)) == {"BRATS_001", "BRATS_002", "BRATS_003"}
    submission_roundtrip("decathlon", {"BRATS_004": (label, label_geo)}, {"BRATS_004": "BRATS_004.nii.gz"}, tmp_path)


def test_layout_errors_are_one_line(tmp_path):
    raw = tmp_path / "raw"
    (raw / "images").mkdir(parents=True)
    with pytest.raises(SegkitError) as err:
        convert(get_adapter("decathlon"), raw, tmp_path / "out")
    msg = str(err.value)
    assert "\n" not in msg and "expected an MSD task folder" in msg and "found images/" in msg


def test_refuses_non_empty_output_and_overwrites_on_request(hippocampus_msd, tmp_path):
    small = tmp_path / "Task04_small"
    (small / "imagesTr").mkdir(parents=True)
    (small / "labelsTr").mkdir()
    meta = json.loads((hippocampus_msd / "dataset.json").read_text())
    meta["training"] = meta["training"][:2]
    meta.pop("test")
    for e in meta["training"]:
        for key in ("image", "label"):
            (small / e[key]).write_bytes((hippocampus_msd / e[key]).read_bytes())
    (small / "dataset.json").write_text(json.dumps(meta))
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("user data")
    with pytest.raises(SegkitError, match="not empty"):
        convert(get_adapter("decathlon"), small, out)
    assert (out / "keep.txt").read_text() == "user data"
    convert(get_adapter("decathlon"), small, out, overwrite=True)
    assert not (out / "keep.txt").exists() and (out / "dataset.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Task04_small", "out"]  # no staging left
