"""kits19 adapter on the real KiTS19 label files: the unusual axis/direction convention must survive.

Only the segmentations are available (see the data's PROVENANCE.md), so the fixture's
``imaging.nii.gz`` files are SYNTHETIC: byte copies of a real segmentation file, i.e. an image on
exactly the real KiTS grid and header. The geometry checks are what matter here.
"""

from __future__ import annotations

import gzip
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from challenge_helpers import assert_same_image, convert_checked, groups

from challenges.convert import make_submission
from challenges.registry import get_adapter
from toolkit.io.images import read_image, write_image


def _nifti_affine(path: Path) -> tuple[tuple[int, ...], np.ndarray]:
    """(dim[1:4], sform rows) straight from the NIfTI-1 header, independent of SimpleITK."""
    with gzip.open(path, "rb") as fh:
        header = fh.read(348)
    dims = struct.unpack("<8h", header[40:56])[1:4]
    srow = np.array(struct.unpack("<12f", header[280:328])).reshape(3, 4)
    return dims, srow


@pytest.fixture
def kits_raw(shared_data, tmp_path) -> Path:
    src = shared_data / "KiTS19_segmentations_only" / "data"
    if not (src / "case_00002" / "segmentation.nii.gz").is_file():
        pytest.skip("KiTS19 label files not available")
    data = tmp_path / "kits19" / "data"
    real = src / "case_00002" / "segmentation.nii.gz"
    for case, with_label in (("case_00002", True), ("case_00023", True), ("case_00210", False)):
        (data / case).mkdir(parents=True)
        shutil.copyfile(real, data / case / "imaging.nii.gz")  # SYNTHETIC image on the real grid
        if with_label:
            shutil.copyfile(real, data / case / "segmentation.nii.gz")
    shutil.copyfile(src / "kits.json", data / "kits.json")
    return tmp_path / "kits19"


def test_kits_axis_convention_survives_convert_and_submission(kits_raw, tmp_path):
    out = tmp_path / "Dataset040_KiTS"
    ds = convert_checked("kits19", kits_raw, out)
    assert ds["labels"] == {"background": 0, "kidney": 1, "tumor": 2}
    # the default label release is the repository's since Dec 2019, with case 23 fixed: nothing excluded
    assert ds["numTraining"] == 2 and ds["numTest"] == 1
    assert groups(out) == {"case_00002": "case_00002", "case_00023": "case_00023"}
    raw_label = kits_raw / "data" / "case_00002" / "segmentation.nii.gz"
    assert_same_image(raw_label, out / "labelsTr" / "case_00002.nii.gz")
    img = sitk.ReadImage(str(out / "imagesTs" / "case_00210_0000.nii.gz"))
    assert np.allclose(img.GetDirection(), (0, 0, 1, 0, 1, 0, -1, 0, 0))  # KiTS convention, not reoriented

    # A prediction written the way `segkit predict` writes it: the input image's geometry, our writer.
    array, geometry = read_image(out / "imagesTs" / "case_00210_0000.nii.gz")
    pred_dir = tmp_path / "pred"
    write_image(array.astype(np.uint8), geometry, pred_dir / "case_00210.nii.gz")
    written = make_submission(get_adapter("kits19"), pred_dir, tmp_path / "submission")
    assert [p.name for p in written] == ["prediction_00210.nii.gz"]
    back, back_geo = read_image(written[0])
    assert np.array_equal(back, array) and back_geo == geometry
    dims_in, srow_in = _nifti_affine(kits_raw / "data" / "case_00210" / "imaging.nii.gz")
    dims_out, srow_out = _nifti_affine(written[0])
    assert dims_in == dims_out  # slice axis still first in the NIfTI array
    assert np.allclose(srow_in, srow_out, rtol=0, atol=1e-5), (srow_in, srow_out)


def test_kits_exclusions_come_from_the_yaml(kits_raw, tmp_path):
    out = tmp_path / "all"
    ds = convert_checked("kits19", kits_raw, out, exclude=[])
    assert ds["numTraining"] == 2


def test_kits_paper_exclusions_belong_to_the_april_2019_labels(kits_raw, tmp_path):
    """The paper excluded 23, 68, 125, 133 from the April 2019 labels; the Dec 2019 labels fixed 23 and 125."""
    ds = convert_checked("kits19", kits_raw, tmp_path / "paper", label_release="2019-04-15")
    assert ds["numTraining"] == 1  # case_00023 left out
    assert get_adapter("kits19", {"label_release": "2019-04-15"}).excluded() == [
        "case_00023", "case_00068", "case_00125", "case_00133"]
    assert get_adapter("kits19").excluded() == []
    from toolkit.errors import SegkitError

    with pytest.raises(SegkitError, match="unknown KiTS19 label_release '2020'"):
        get_adapter("kits19", {"label_release": "2020"}).excluded()
