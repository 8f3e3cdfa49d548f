"""folder adapter on the three common public layouts, on the real samples in ../shared/data:
one folder per case (BraTS), one mask file per structure (TotalSegmentator), PNG image sets (ISBI EM).

Expectations are computed independently from the source files (SimpleITK/numpy), never from the
adapter's own code; the error cases run on small synthetic copies of each layout.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from challenge_helpers import convert_checked, snapshot, write_raw

from challenges.convert import convert
from challenges.registry import get_adapter
from toolkit.cli import main
from toolkit.errors import SegkitError
from toolkit.io.images import read_image

BRATS = "examples/dataForExamples/brats2015TrainingData"
TOTALSEG = "tests/reference_files"
ISBI = "data/membrane/train"


def _array(path: Path) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def _write_png(path: Path, array: np.ndarray, rgb: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(sitk.GetImageFromArray(array, isVector=rgb), str(path))
    return path


# -- the real samples -----------------------------------------------------------------------------------

def test_brats_one_folder_per_case(shared_data, tmp_path):
    raw = shared_data / "BraTS2015_deepmedic_examples"
    out = tmp_path / "Dataset910_BraTS"
    ds = convert_checked("folder", raw, out, case_dirs=True, image_dir=[f"{BRATS}/train", f"{BRATS}/validation"],
                         channel_files=["Flair_*.nii.gz", "T1c_*.nii.gz"], label_file="OTMultiClass.nii.gz",
                         channel_names=["FLAIR", "T1c"],
                         labels={"background": 0, "necrosis": 1, "edema": 2, "non_enhancing": 3, "enhancing": 4})
    cases = sorted(p.name for p in (raw / BRATS).glob("*/brats_*") if p.parent.name != "test")
    assert ds["numTraining"] == len(cases) == 4
    assert json.loads((out / "groups.json").read_text()) == {c: c for c in cases}
    for folder in (raw / BRATS).glob("*/brats_*"):
        if folder.parent.name == "test":
            continue
        case = folder.name
        for channel, name in enumerate(("Flair_subtrMeanDivStd", "T1c_subtrMeanDivStd")):
            assert (out / "imagesTr" / f"{case}_{channel:04d}.nii.gz").read_bytes() == \
                (folder / f"{name}.nii.gz").read_bytes()
        source = sitk.ReadImage(str(folder / "OTMultiClass.nii.gz"))
        label, geometry = read_image(out / "labelsTr" / f"{case}.nii.gz")
        src = sitk.GetArrayFromImage(source)
        assert label.dtype == np.uint8 and src.dtype == np.float32
        for value in range(5):
            assert int((label == value).sum()) == int((src == value).sum()), (case, value)
        assert geometry.spacing_xyz == pytest.approx(source.GetSpacing())
        assert geometry.origin_xyz == pytest.approx(source.GetOrigin())


def _totalseg_structures(folder: Path) -> dict[str, int]:
    names = sorted(p.name.removesuffix(".nii.gz") for p in folder.glob("*.nii.gz"))
    return {name: value for value, name in enumerate(names, start=1)}


def test_totalsegmentator_one_mask_per_structure(shared_data, tmp_path):
    raw = shared_data / "TotalSegmentator"
    ref = raw / TOTALSEG
    structures = _totalseg_structures(ref / "example_seg_fast")
    out = tmp_path / "Dataset911_TotalSeg"
    ds = convert_checked("folder", raw, out, case_dirs=True, image_dir="tests", channel_names=["CT"],
                         channel_files=["example_ct_sm.nii.gz"], structures=structures,
                         structure_files="example_seg_fast/{structure}.nii.gz")
    assert ds["labels"] == {"background": 0, **structures} and len(structures) == 117
    label, geometry = read_image(out / "labelsTr" / "reference_files.nii.gz")
    image = sitk.ReadImage(str(ref / "example_ct_sm.nii.gz"))
    assert label.shape == image.GetSize()[::-1]
    assert geometry.spacing_xyz == pytest.approx(image.GetSpacing()) and \
        geometry.origin_xyz == pytest.approx(image.GetOrigin())
    for name, value in structures.items():  # every structure keeps exactly its voxels (the masks do not overlap)
        mask = _array(ref / "example_seg_fast" / f"{name}.nii.gz")
        assert np.array_equal(label == value, mask > 0), name
    # TotalSegmentator's own multi-label map of the same run: same foreground, one value per region
    theirs = _array(ref / "example_seg_fast.nii.gz")
    assert np.array_equal(label > 0, theirs > 0) and int((label > 0).sum()) > 100_000
    assert all(len(np.unique(theirs[label == v])) == 1 for v in np.unique(label[label > 0]))


def test_totalsegmentator_mask_off_the_image_grid(shared_data, tmp_path):
    """pulmonary_report: heart.nii.gz lies on a larger grid than ct_cropped.nii.gz; never resampled."""
    adapter = get_adapter("folder", {"case_dirs": True, "image_dir": f"{TOTALSEG}/pulmonary_report",
                                     "channel_names": ["CT"], "channel_files": ["ct_cropped.nii.gz"],
                                     "structures": {"pulmonary_artery": 1, "heart": 2},
                                     "structure_files": "{structure}.nii.gz"})
    with pytest.raises(SegkitError, match=r"heart\.nii\.gz: structure mask is not on the image grid: size "
                                          r"191x167x233 vs 112x102x122") as err:
        convert(adapter, shared_data / "TotalSegmentator", tmp_path / "out")
    assert "\n" not in str(err.value) and not (tmp_path / "out").exists()


def test_isbi_png_image_set(shared_data, tmp_path, capsys):
    raw = shared_data / "ISBI2012_EM_membrane"
    out = tmp_path / "Dataset912_ISBI"
    ds = convert_checked("folder", raw, out, image_dir=f"{ISBI}/image", label_dir=f"{ISBI}/label",
                         image_pattern=r"(?P<case>\d+)\.png", label_pattern=r"(?P<case>\d+)\.png",
                         channel_names=["EM"], labels={"background": 0, "membrane": 1},
                         label_values={0: 1, 255: 0}, spacing=[0.004, 0.004])
    sources = sorted((raw / ISBI / "image").glob("*.png"))
    assert ds["numTraining"] == len(sources) == 24
    for src in sources:
        case = src.name.removesuffix(".png")
        image, geometry = read_image(out / "imagesTr" / f"{case}_0000.nii.gz")
        assert image.dtype == np.uint8 and np.array_equal(image, _array(src))
        assert geometry.ndim == 2 and geometry.spacing == pytest.approx((0.004, 0.004))
        label, label_geometry = read_image(out / "labelsTr" / f"{case}.nii.gz")
        grey = _array(raw / ISBI / "label" / src.name)
        assert label.shape == grey.shape == (512, 512) and label_geometry == geometry
        assert np.array_equal(label == 1, grey == 0) and np.array_equal(label == 0, grey == 255)
    with pytest.raises(SystemExit) as exit_:
        main(["verify", str(out)])
    assert exit_.value.code == 0 and "OK (24 cases, 1 channel (EM)" in capsys.readouterr().out


# -- the layouts on synthetic copies: positive cases ------------------------------------------------------

def test_flat_channel_files_and_label_file(tmp_path):
    """BraTS 2020 style names in one folder: {case}_flair / {case}_t1 / {case}_seg."""
    raw, rng = tmp_path / "raw", np.random.default_rng(1)
    truth = {}
    for case in ("BraTS20_001", "BraTS20_002"):
        flair, t1 = (rng.integers(0, 900, (3, 5, 6)).astype(np.int16) for _ in range(2))
        seg = rng.integers(0, 3, (3, 5, 6)).astype(np.uint8)
        write_raw(raw / "all" / f"{case}_flair.nii.gz", flair)
        write_raw(raw / "all" / f"{case}_t1.nii.gz", t1)
        write_raw(raw / "all" / f"{case}_seg.nii.gz", seg)
        truth[case] = (flair, t1, seg)
    out = tmp_path / "out"
    convert_checked("folder", raw, out, image_dir="all", label_dir="all", channel_names=["FLAIR", "T1"],
                    labels={"background": 0, "a": 1, "b": 2}, channel_files=["{case}_flair.nii.gz", "{case}_t1.nii.gz"],
                    label_file="{case}_seg.nii.gz")
    for case, (flair, t1, seg) in truth.items():
        assert np.array_equal(read_image(out / "imagesTr" / f"{case}_0000.nii.gz")[0], flair)
        assert np.array_equal(read_image(out / "imagesTr" / f"{case}_0001.nii.gz")[0], t1)
        assert np.array_equal(read_image(out / "labelsTr" / f"{case}.nii.gz")[0], seg)


def _structure_raw(raw: Path) -> tuple[np.ndarray, np.ndarray]:
    """Case s01 with liver and tumour masks overlapping in 2 voxels, TotalSegmentator v2 layout."""
    write_raw(raw / "s01" / "ct.nii.gz", np.zeros((2, 3, 4), np.int16), spacing=(0.7, 0.7, 2.0))
    liver = np.zeros((2, 3, 4), np.uint8)
    liver[0] = 1
    tumour = np.zeros((2, 3, 4), np.uint8)
    tumour[:, 0, :2] = 1
    write_raw(raw / "s01" / "segmentations" / "liver.nii.gz", liver, spacing=(0.7, 0.7, 2.0))
    write_raw(raw / "s01" / "segmentations" / "tumour.nii.gz", tumour, spacing=(0.7, 0.7, 2.0))
    return liver, tumour


STRUCTURES = {"case_dirs": True, "image_dir": ".", "channel_names": ["CT"], "channel_files": ["ct.nii.gz"],
              "structures": {"liver": 1, "tumour": 2}, "structure_files": "segmentations/{structure}.nii.gz"}


def test_structure_priority_resolves_overlaps(tmp_path):
    raw = tmp_path / "raw"
    liver, tumour = _structure_raw(raw)
    for priority, winner in ((["tumour"], 2), (["liver", "tumour"], 1)):
        out = tmp_path / f"out_{winner}"
        convert_checked("folder", raw, out, **STRUCTURES, structure_priority=priority)
        label = read_image(out / "labelsTr" / "s01.nii.gz")[0]
        both = (liver > 0) & (tumour > 0)
        assert both.sum() == 2 and np.all(label[both] == winner)
        assert np.all(label[(liver > 0) & ~both] == 1) and np.all(label[(tumour > 0) & ~both] == 2)
        assert np.all(label[(liver == 0) & (tumour == 0)] == 0)


def test_flat_structures_on_tiff_stacks(tmp_path):
    """Flat layout, masks in label_dir/<case>/<structure>.tif, 3D TIFF stacks with a [z, y, x] spacing."""
    raw, rng = tmp_path / "raw", np.random.default_rng(3)
    stack = rng.integers(0, 255, (3, 4, 5)).astype(np.uint8)
    _write_png(raw / "images" / "em1.tif", stack)
    cells, vesicles = (rng.random((3, 4, 5)) > 0.6).astype(np.uint8), np.zeros((3, 4, 5), np.uint8)
    vesicles[1, 1:3, 1:3] = 255
    cells[vesicles > 0] = 0
    _write_png(raw / "labels" / "em1" / "cell.tif", cells)
    _write_png(raw / "labels" / "em1" / "vesicle.tif", vesicles)
    out = tmp_path / "out"
    ds = convert_checked("folder", raw, out, channel_names=["EM"], image_pattern=r"(?P<case>.+)\.tif",
                         structures={"cell": 1, "vesicle": 2}, structure_files="{case}/{structure}.tif",
                         spacing=[40, 4, 4])
    assert ds["labels"] == {"background": 0, "cell": 1, "vesicle": 2}
    image, geometry = read_image(out / "imagesTr" / "em1_0000.nii.gz")
    label, label_geometry = read_image(out / "labelsTr" / "em1.nii.gz")
    assert np.array_equal(image, stack) and geometry.spacing == pytest.approx((40, 4, 4)) and label_geometry == geometry
    assert np.array_equal(label, cells + 2 * (vesicles > 0))


def test_png_colour_channels_when_declared(tmp_path):
    raw, rng = tmp_path / "raw", np.random.default_rng(2)
    rgb = rng.integers(0, 255, (6, 7, 3)).astype(np.uint8)
    _write_png(raw / "images" / "a.png", rgb, rgb=True)
    _write_png(raw / "labels" / "a.png", (rgb[..., 0] > 127).astype(np.uint8))
    out = tmp_path / "out"
    convert_checked("folder", raw, out, channel_names=["R", "G", "B"], labels={"background": 0, "x": 1},
                    spacing=[0.5, 0.25], image_pattern=r"(?P<case>.+)\.png", label_pattern=r"(?P<case>.+)\.png")
    for c in range(3):
        image, geometry = read_image(out / "imagesTr" / f"a_{c:04d}.nii.gz")
        assert np.array_equal(image, rgb[..., c]) and geometry.spacing == pytest.approx((0.5, 0.25))


# -- error cases: one line naming the file and the problem ------------------------------------------------

def _fails(tmp_path: Path, raw: Path, match: str, **options) -> str:
    before = snapshot(raw)
    with pytest.raises(SegkitError, match=match) as err:
        convert(get_adapter("folder", options), raw, tmp_path / "out")
    assert "\n" not in str(err.value) and snapshot(raw) == before and not (tmp_path / "out").exists()
    return str(err.value)


def test_overlap_without_priority_names_both_structures_and_the_case(tmp_path):
    raw = tmp_path / "raw"
    _structure_raw(raw)
    message = _fails(tmp_path, raw, "structures 'liver' and 'tumour' overlap in case 's01'", **STRUCTURES)
    assert message.startswith(str(raw / "s01" / "segmentations" / "tumour.nii.gz"))
    _fails(tmp_path, raw, "structure_priority names", **STRUCTURES, structure_priority=["kidney"])


def test_structure_mask_errors(tmp_path):
    raw = tmp_path / "raw"
    _structure_raw(raw)
    (raw / "s01" / "segmentations" / "liver.nii.gz").unlink()
    _fails(tmp_path, raw, r"s01: missing structure 'liver' file: nothing matches 'segmentations/liver\.nii\.gz'",
           **STRUCTURES)
    write_raw(raw / "s01" / "segmentations" / "liver.nii.gz", np.full((2, 3, 4), 2, np.uint8) * np.arange(4),
              spacing=(0.7, 0.7, 2.0))
    _fails(tmp_path, raw, r"liver\.nii\.gz: structure mask holds several foreground values", **STRUCTURES)
    write_raw(raw / "s01" / "segmentations" / "liver.nii.gz", np.ones((2, 3, 4), np.uint8), spacing=(0.7, 0.7, 3.0))
    _fails(tmp_path, raw, r"liver\.nii\.gz: structure mask is not on the image grid: spacing", **STRUCTURES)


def test_no_case_found_names_the_pattern(tmp_path):
    raw = tmp_path / "raw"
    write_raw(raw / "images" / "a.nii.gz", np.zeros((2, 2, 2), np.int16))
    (raw / "labels").mkdir()
    opts = {"channel_names": ["CT"], "labels": {"background": 0, "x": 1}}
    _fails(tmp_path, raw, r"no training case found: no file in images/ matches image_pattern '\(\?P<case>x\)'",
           **opts, image_pattern="(?P<case>x)")
    _fails(tmp_path, raw, r"no training case found: no file in images/ matches channel_files\[0\] '\{case\}_t1",
           **opts, channel_files=["{case}_t1.nii.gz"], label_file="{case}.nii.gz")
    _fails(tmp_path, raw, r"no training case found: no case folder in images/",
           **opts, case_dirs=True, channel_files=["ct.nii.gz"], label_file="seg.nii.gz")


def test_missing_channel_file_in_a_case_folder(tmp_path):
    raw = tmp_path / "raw"
    for case in ("p1", "p2"):
        write_raw(raw / "train" / case / f"{case}_flair.nii.gz", np.zeros((2, 2, 2), np.int16))
        write_raw(raw / "train" / case / f"{case}_seg.nii.gz", np.zeros((2, 2, 2), np.uint8))
    write_raw(raw / "train" / "p1" / "p1_t1.nii.gz", np.zeros((2, 2, 2), np.int16))
    _fails(tmp_path, raw, r"train/p2: missing channel file: nothing matches 'p2_t1\.nii\.gz'", case_dirs=True,
           image_dir="train", channel_names=["FLAIR", "T1"], labels={"background": 0, "x": 1},
           channel_files=["{case}_flair.nii.gz", "{case}_t1.nii.gz"], label_file="{case}_seg.nii.gz")
    _fails(tmp_path, raw, r"train/p1: missing label file: nothing matches 'p1_label\.nii\.gz'", case_dirs=True,
           image_dir="train", channel_names=["FLAIR"], labels={"background": 0, "x": 1},
           channel_files=["{case}_flair.nii.gz"], label_file="{case}_label.nii.gz")


def _png_raw(raw: Path, label_shape=(6, 7), label_ending=".png") -> None:
    _write_png(raw / "images" / "a.png", np.zeros((6, 7), np.uint8))
    label = np.zeros(label_shape, np.uint8)
    label[0, 0] = 255
    _write_png(raw / "labels" / f"a{label_ending}", label)


PNG = {"image_pattern": r"(?P<case>.+)\.png", "label_pattern": r"(?P<case>.+)\.png", "channel_names": ["EM"],
       "labels": {"background": 0, "membrane": 1}, "spacing": [1.0, 1.0],
       "label_values": {0: 1, 255: 0}}


def test_png_set_errors(tmp_path):
    raw = tmp_path / "raw"
    _png_raw(raw, label_shape=(6, 8))
    _fails(tmp_path, raw, r"labels/a\.png: inconsistent sizes: 6x8 but the case's image a\.png is 6x7", **PNG)
    _png_raw(raw)
    _fails(tmp_path, raw, r"images/a\.png: PNG/TIFF/JPEG files carry no physical spacing", **{**PNG, "spacing": None})
    _fails(tmp_path, raw, r"images/a\.png: spacing \[1, 1, 1\] has 3 values but the image is 2D",
           **{**PNG, "spacing": [1, 1, 1]})
    _fails(tmp_path, raw, r"labels/a\.png: label holds value\(s\) 255 missing from label_values",
           **{**PNG, "label_values": {0: 0}})
    _write_png(raw / "images" / "a.png", np.zeros((6, 7, 3), np.uint8), rgb=True)
    _fails(tmp_path, raw, r"images/a\.png: is a colour image \(3 components per pixel\); declare one channel name",
           **PNG)


def test_unsupported_ending_and_jpeg_labels(tmp_path):
    raw = tmp_path / "raw"
    _png_raw(raw, label_ending=".jpg")
    _fails(tmp_path, raw, r"labels/a\.jpg: JPEG is lossy and cannot hold a label map",
           **{**PNG, "label_pattern": r"(?P<case>.+)\.jpg"})
    (raw / "images" / "b.gif").write_bytes(b"GIF89a")
    _write_png(raw / "labels" / "b.png", np.zeros((6, 7), np.uint8))
    _fails(tmp_path, raw, r"images/b\.gif: unsupported file ending",
           **{**PNG, "image_pattern": r"(?P<case>.+)\.(png|gif)", "label_pattern": r"(?P<case>.+)\.(jpg|png)"})
    _write_png(raw / "images" / "a.tif", np.zeros((6, 7), np.uint8))
    _fails(tmp_path, raw, r"images: a\.png and a\.tif are both channel 0 of case 'a'; narrow image_pattern",
           **{**PNG, "image_pattern": r"(?P<case>.+)\.(png|tif)"})


def test_rerun_with_other_options_does_not_resume_stale_files(tmp_path):
    """A failed run leaves .out.partial; a rerun with other options must not keep its files."""
    raw = tmp_path / "raw"
    _png_raw(raw)
    _fails(tmp_path, raw, "missing from label_values", **{**PNG, "label_values": {0: 0}})
    assert (tmp_path / ".out.partial" / "imagesTr" / "a_0000.nii.gz").is_file()  # written with spacing [1, 1]
    convert_checked("folder", raw, tmp_path / "out", **{**PNG, "spacing": [2.0, 3.0]})
    assert read_image(tmp_path / "out" / "imagesTr" / "a_0000.nii.gz")[1].spacing == pytest.approx((2.0, 3.0))
