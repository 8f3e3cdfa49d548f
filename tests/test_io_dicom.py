"""DICOM series reader on a real TCIA series (names not in position order) and on broken copies of it."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from toolkit.errors import SegkitError
from toolkit.io.dicom import dicom_series, read_dicom_series
from toolkit.io.images import read_image, write_image

STUDY = "TCIA_BrainTumorProgression_DICOM/PGBM-001/11-19-1991-FH-HEADBrain Protocols-40993"
SERIES = ("11-T1post-03326", "35637-FLAIRreg-16386", "5364-MaskTumor-94345")


@pytest.fixture(scope="module")
def t1post(shared_data) -> Path:
    folder = shared_data / STUDY / SERIES[0]
    if not folder.is_dir():
        pytest.skip(f"real data not available: {folder} is absent")
    return folder


def _gdcm_reference(folder: Path) -> sitk.Image:
    """The independent expectation: GDCM's own slice sorting, read by SimpleITK's series reader."""
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder)))
    return reader.Execute()


def test_file_names_are_not_in_position_order(t1post):
    """The premise: on this real series, stacking by file name would scramble the volume."""
    by_name = sorted(t1post.glob("*.dcm"))
    physical = dicom_series(t1post).files
    assert sorted(physical) == by_name and list(physical) != by_name
    instance = [int(pydicom.dcmread(p, stop_before_pixels=True).InstanceNumber) for p in physical]
    assert instance == list(range(1, 26))  # the scanner's own numbering agrees with position order


@pytest.mark.parametrize("series", SERIES)
def test_volume_equals_gdcm_sorted_series(shared_data, series):
    folder = shared_data / STUDY / series
    if not folder.is_dir():
        pytest.skip(f"real data not available: {folder} is absent")
    array, geometry = read_dicom_series(folder)
    reference = _gdcm_reference(folder)
    assert array.shape == (25, 320, 260)
    assert array.dtype == sitk.GetArrayViewFromImage(reference).dtype
    assert np.array_equal(array, sitk.GetArrayFromImage(reference))
    assert np.allclose(geometry.spacing_xyz, reference.GetSpacing(), rtol=1e-6)
    assert np.allclose(geometry.origin_xyz, reference.GetOrigin(), atol=1e-6)
    assert np.allclose(geometry.direction, reference.GetDirection(), atol=1e-6)


def test_spacing_and_origin_are_what_the_tags_say(t1post):
    _, geometry = read_dicom_series(t1post)
    headers = [pydicom.dcmread(p, stop_before_pixels=True) for p in sorted(t1post.glob("*.dcm"))]
    first = min(headers, key=lambda h: int(h.InstanceNumber))
    row_spacing, col_spacing = (float(v) for v in first.PixelSpacing)
    assert geometry.spacing_xyz[:2] == pytest.approx((col_spacing, row_spacing))
    assert geometry.spacing_xyz[2] == pytest.approx(float(first.SpacingBetweenSlices), abs=1e-5)  # 6.5 mm
    assert geometry.origin_xyz == pytest.approx([float(v) for v in first.ImagePositionPatient])
    row, col = np.array(first.ImageOrientationPatient[:3], float), np.array(first.ImageOrientationPatient[3:], float)
    assert np.array(geometry.direction).reshape(3, 3)[:, 2] == pytest.approx(np.cross(row, col), abs=1e-6)


def test_same_array_convention_as_read_image(t1post, tmp_path):
    """The (z, y, x) array and geometry equal what read_image gives for the series stored as NIfTI."""
    nifti = tmp_path / "t1post.nii.gz"
    sitk.WriteImage(_gdcm_reference(t1post), str(nifti))
    want, want_geometry = read_image(nifti)
    array, geometry = read_dicom_series(t1post)
    assert np.array_equal(array, want)
    assert geometry.differs_from(want_geometry, rel_tol=1e-6) is None
    write_image(array, geometry, tmp_path / "ours.nii.gz")  # and the geometry is writable as is
    assert read_image(tmp_path / "ours.nii.gz")[1].differs_from(want_geometry, rel_tol=1e-6) is None


def test_list_of_files_in_any_order(t1post):
    files = sorted(t1post.glob("*.dcm"))
    rng = np.random.default_rng(3)
    shuffled = [files[i] for i in rng.permutation(len(files))]
    a, ga = read_dicom_series(shuffled)
    b, gb = read_dicom_series(t1post)
    assert np.array_equal(a, b) and ga == gb


@pytest.fixture
def series_copy(t1post, tmp_path) -> Path:
    copy = tmp_path / "series copy"
    shutil.copytree(t1post, copy)
    return copy


def _by_instance(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.dcm"), key=lambda p: int(pydicom.dcmread(p, stop_before_pixels=True).InstanceNumber))


def test_missing_slice_is_uneven_spacing(series_copy):
    _by_instance(series_copy)[12].unlink()
    with pytest.raises(SegkitError, match=r"uneven slice spacing: 13 mm .* 6\.5 mm elsewhere \(tolerance 1%\)") as err:
        read_dicom_series(series_copy)
    assert str(series_copy) in str(err.value) and "\n" not in str(err.value)


def test_duplicate_position_is_an_error(series_copy):
    shutil.copy(_by_instance(series_copy)[5], series_copy / "zz_copy.dcm")
    with pytest.raises(SegkitError, match="two slices at the same position"):
        read_dicom_series(series_copy)


def _edit(path: Path, **values) -> None:
    ds = pydicom.dcmread(path)
    for key, value in values.items():
        if value is None:
            delattr(ds, key)
        else:
            setattr(ds, key, value)
    ds.save_as(path)


def test_small_jitter_within_tolerance(series_copy):
    path = _by_instance(series_copy)[10]
    ds = pydicom.dcmread(path)
    row, col = np.array(ds.ImageOrientationPatient[:3], float), np.array(ds.ImageOrientationPatient[3:], float)
    moved = np.array(ds.ImagePositionPatient, float) + 0.03 * np.cross(row, col)  # 0.5 % of 6.5 mm
    _edit(path, ImagePositionPatient=[f"{v:.6f}" for v in moved])
    _, geometry = read_dicom_series(series_copy)
    assert geometry.spacing_xyz[2] == pytest.approx(6.5, abs=1e-4)
    with pytest.raises(SegkitError, match=r"uneven slice spacing.*tolerance 0\.1%"):
        read_dicom_series(series_copy, tolerance=0.001)


def test_missing_position_names_the_file(series_copy):
    path = _by_instance(series_copy)[3]
    _edit(path, ImagePositionPatient=None)
    with pytest.raises(SegkitError, match=r"\(0020,0032\) is missing") as err:
        read_dicom_series(series_copy)
    assert err.value.path == path


def test_missing_orientation_names_the_file(series_copy):
    path = _by_instance(series_copy)[7]
    _edit(path, ImageOrientationPatient=None)
    with pytest.raises(SegkitError, match=r"\(0020,0037\) is missing") as err:
        read_dicom_series(series_copy)
    assert err.value.path == path


def test_mixed_orientations_are_an_error(series_copy):
    _edit(_by_instance(series_copy)[7], ImageOrientationPatient=["1", "0", "0", "0", "1", "0"])
    with pytest.raises(SegkitError, match="mixed slice orientations"):
        read_dicom_series(series_copy)


def test_two_series_in_one_folder_are_an_error(series_copy):
    _edit(_by_instance(series_copy)[7], SeriesInstanceUID="1.2.3.4")
    with pytest.raises(SegkitError, match="more than one DICOM series"):
        read_dicom_series(series_copy)


def test_not_dicom_and_empty_folder(tmp_path):
    (tmp_path / "a.dcm").write_text("not dicom", encoding="utf-8")
    with pytest.raises(SegkitError, match="not a readable DICOM file"):
        read_dicom_series(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(SegkitError, match="holds no DICOM files"):
        read_dicom_series(tmp_path / "empty")
