"""cremi adapter: HDF5 files in the CREMI format (raw uint8, clefts uint64 with 0xff.. background)."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
from challenge_helpers import convert_checked, groups

from challenges.convert import make_submission
from challenges.registry import get_adapter
from toolkit.io.images import Geometry, read_image, write_image

BG = np.uint64(0xFFFFFFFFFFFFFFFF)
SHAPE = (5, 24, 20)
RES = (40.0, 4.0, 4.0)


def _sample(path: Path, rng, with_clefts: bool, padded: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    raw_shape = tuple(s + 4 for s in SHAPE) if padded else SHAPE
    raw = rng.integers(0, 256, raw_shape).astype(np.uint8)
    clefts = None
    with h5py.File(path, "w") as f:
        f.attrs["file_format"] = "0.2"
        ds = f.create_dataset("volumes/raw", data=raw, compression="gzip")
        ds.attrs["resolution"] = RES
        if with_clefts:
            clefts = np.full(SHAPE, BG, np.uint64)
            clefts[1:3, 4:9, 5:8] = 7
            clefts[3, 10:14, 2:6] = 123456
            lab = f.create_dataset("volumes/labels/clefts", data=clefts, compression="gzip")
            lab.attrs["resolution"] = RES
            if padded:
                lab.attrs["offset"] = (80.0, 8.0, 8.0)  # z, y, x in nm -> 2 voxels in
            f.create_dataset("volumes/labels/neuron_ids", data=np.arange(np.prod(SHAPE), dtype=np.uint64).reshape(SHAPE))
    return raw, clefts


@pytest.fixture
def cremi_raw(tmp_path) -> tuple[Path, dict]:
    rng = np.random.default_rng(0)
    raw = tmp_path / "cremi"
    raw.mkdir()
    truth = {name: _sample(raw / f"{name}.hdf", rng, True) for name in
             ("sample_A_20160501", "sample_B_20160501", "sample_C_20160501")}
    truth["sample_A+_20160601"] = _sample(raw / "sample_A+_20160601.hdf", rng, False)
    _sample(raw / "sample_A_padded_20160501.hdf", rng, True, padded=True)  # skipped (YAML)
    return raw, truth


def test_cremi_convert(cremi_raw, tmp_path):
    raw, truth = cremi_raw
    out = tmp_path / "Dataset061_CREMI"
    ds = convert_checked("cremi", raw, out)
    assert ds["numTraining"] == 3 and ds["numTest"] == 1
    assert ds["segkit_training"] == {"configurations": ["3d_fullres"], "models_on_all_data": 5}
    splits = json.loads((out / "splits_final.json").read_text())
    names = ["sample_A_20160501", "sample_B_20160501", "sample_C_20160501"]
    assert splits == [{"train": names, "val": names}] * 5
    assert set(groups(out)) == set(names)
    for case_id, (image, clefts) in truth.items():
        split = "Tr" if clefts is not None else "Ts"
        got, geo = read_image(out / f"images{split}" / f"{case_id}_0000.nii.gz")
        assert np.array_equal(got, image) and got.dtype == np.uint8
        assert geo.spacing == RES and geo.origin_xyz == (0.0, 0.0, 0.0)
        if clefts is not None:
            label, _ = read_image(out / "labelsTr" / f"{case_id}.nii.gz")
            assert np.array_equal(label, (clefts != BG).astype(np.uint8))


def test_cremi_padded_raw_is_cropped_to_the_labels(tmp_path):
    rng = np.random.default_rng(1)
    raw = tmp_path / "cremi"
    raw.mkdir()
    image, clefts = _sample(raw / "sample_A_padded_20160501.hdf", rng, True, padded=True)
    out = tmp_path / "out"
    convert_checked("cremi", raw, out, skip_names_containing=[])
    got, geo = read_image(out / "imagesTr" / "sample_A_padded_20160501_0000.nii.gz")
    assert np.array_equal(got, image[2:2 + SHAPE[0], 2:2 + SHAPE[1], 2:2 + SHAPE[2]])
    assert geo.origin_xyz == (8.0, 8.0, 80.0)


def test_cremi_submission_roundtrip(tmp_path):
    rng = np.random.default_rng(2)
    pred = rng.integers(0, 2, SHAPE).astype(np.uint8)
    write_image(pred, Geometry(RES[::-1], (0.0, 0.0, 0.0), (1, 0, 0, 0, 1, 0, 0, 0, 1)),
                tmp_path / "pred" / "sample_A+_20160601.nii.gz")
    written = make_submission(get_adapter("cremi"), tmp_path / "pred", tmp_path / "sub")
    assert [p.name for p in written] == ["sample_A+_20160601.hdf"]
    with h5py.File(written[0], "r") as f:
        clefts = f["volumes/labels/clefts"]
        assert clefts.dtype == np.uint64 and tuple(clefts.attrs["resolution"]) == RES
        assert "offset" not in clefts.attrs and f.attrs["file_format"] == "0.2"
        back = clefts[...]
    assert np.array_equal(back == BG, pred == 0)
    assert np.array_equal(np.where(back == BG, 0, back).astype(np.uint8), pred)
