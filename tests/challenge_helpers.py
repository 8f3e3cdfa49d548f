"""Helpers shared by the challenge-adapter tests: writing raw images, converting, round trips."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from challenges.convert import convert, make_submission
from challenges.registry import get_adapter
from toolkit.dataset.verify import verify_dataset
from toolkit.io.images import Geometry, read_image, write_image


def write_raw(path: Path, array: np.ndarray, spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0),
              direction=None, compress: bool = True) -> Path:
    """Write an image the way a challenge ships it (exact dtype, spacing in x, y, z)."""
    img = sitk.GetImageFromArray(array)
    img.SetSpacing(spacing)
    img.SetOrigin(origin)
    if direction is not None:
        img.SetDirection(direction)
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(img, str(path), useCompression=compress)
    return path


def snapshot(folder: Path) -> dict[str, str]:
    """Content hash of every file below ``folder`` (to prove RAW is never modified)."""
    return {str(p.relative_to(folder)): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def convert_checked(name: str, raw: Path, out: Path, **overrides) -> dict:
    """Convert, then assert: RAW untouched, dataset verifies, required dataset.json keys present."""
    before = snapshot(raw)
    convert(get_adapter(name, overrides), raw, out)
    assert snapshot(raw) == before, "conversion modified the raw folder"
    assert verify_dataset(out) == []
    ds = json.loads((out / "dataset.json").read_text())
    for key in ("channel_names", "labels", "numTraining", "file_ending", "name", "reference", "licence",
                "description"):
        assert key in ds, key
    assert not any(p.name.startswith(".") for p in out.rglob("*")), "staging leftovers in the dataset"
    return ds


def groups(out: Path) -> dict[str, str]:
    return json.loads((out / "groups.json").read_text())


def assert_same_image(a: Path, b: Path) -> None:
    """Same voxels (values and dtype) and the same geometry, exactly."""
    xa, ga = read_image(a)
    xb, gb = read_image(b)
    assert xa.dtype == xb.dtype and np.array_equal(xa, xb), (a, b)
    assert ga == gb, (ga, gb)


def submission_roundtrip(name: str, preds: dict[str, tuple[np.ndarray, Geometry]], expected: dict[str, str],
                         tmp: Path, **overrides) -> Path:
    """Write canonical predictions, make the submission, re-read: names and voxels must match exactly."""
    pred_dir = tmp / "pred"
    for case_id, (array, geometry) in preds.items():
        write_image(array, geometry, pred_dir / f"{case_id}.nii.gz")
    out = tmp / "submission"
    written = make_submission(get_adapter(name, overrides), pred_dir, out)
    assert all(p.is_file() for p in written)
    images = [p for p in written if p.suffix != ".raw"]  # .mhd headers name their .raw data file
    assert sorted(p.relative_to(out).as_posix() for p in images) == sorted(expected.values())
    for case_id, filename in expected.items():
        array, geometry = preds[case_id]
        back, back_geo = read_image(out / filename)
        assert np.array_equal(back, array) and back.dtype == array.dtype, filename
        assert back_geo == geometry, (filename, back_geo, geometry)
    return out
