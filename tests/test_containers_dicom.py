"""DICOM image-set inputs: grand-challenge writes one ``<SOPInstanceUID>.dcm`` per instance into the socket
folder (file names in no particular slice order); the job reads the series in physical order
(toolkit.io.dicom) and predicts on its grid exactly what it predicts for the same volume as ``.mha``."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from challenges.registry import get_adapter
from toolkit.containers.interface import DICOM_SET_KIND, Socket, find_socket_image, resolve_interface
from toolkit.containers.job import OUTPUT_NAME, run_job, socket_geometry, stage_socket
from toolkit.errors import SegkitError
from toolkit.io.images import Geometry, read_image, write_image

UID = "1.2.826.0.1.3680043.2.1125.9"


def write_dicom_set(array: np.ndarray, geometry: Geometry, folder: Path, seed: int = 0) -> None:
    """One .dcm per slice, named by SOP instance UID in a shuffled order (as the platform's names are)."""
    folder.mkdir(parents=True)
    direction = np.array(geometry.direction, float).reshape(3, 3)
    names = list(range(array.shape[0]))
    random.Random(seed).shuffle(names)
    for k in range(array.shape[0]):
        img = sitk.GetImageFromArray(array[k:k + 1])
        img.SetSpacing(geometry.spacing_xyz)
        img.SetDirection(geometry.direction)
        img.SetOrigin(tuple(np.array(geometry.origin_xyz) + k * geometry.spacing_xyz[2] * direction[:, 2]))
        for key, value in {"0020|000e": UID, "0008|0018": f"{UID}.{names[k] + 1}", "0020|0013": str(k + 1),
                           "0008|0060": "CT"}.items():
            img.SetMetaData(key, value)
        writer = sitk.ImageFileWriter()
        writer.KeepOriginalImageUIDOn()
        writer.SetFileName(str(folder / f"{UID}.{names[k] + 1}.dcm"))
        writer.Execute(img)


def _inputs_json(job: Path, kind: str) -> list[dict]:
    entries = [{"interface": {"slug": "ct-image", "kind": kind, "super_kind": "Image",
                              "relative_path": "images/ct-image"}}]
    (job / "inputs.json").write_text(json.dumps(entries))
    return entries


@pytest.fixture(scope="module")
def ct(phantom_dataset) -> tuple[np.ndarray, Geometry]:
    array, geometry = read_image(phantom_dataset / "imagesTs" / "phantom_008_0000.nii.gz")
    oblique = Geometry(geometry.spacing_xyz, (12.5, -40.0, 7.0), (0.0, 1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0))
    return np.round(array).astype(np.int16), oblique


def test_a_dicom_image_set_is_predicted_as_the_same_volume_in_mha(ct, tiny_phantom_bundle, phantom_dataset,
                                                                   tmp_path):
    from toolkit.bundle.predictor import BundlePredictor

    array, geometry = ct
    itf = resolve_interface("kits19", get_adapter("kits19").container,
                            json.loads((phantom_dataset / "dataset.json").read_text()))
    dcm_job, mha_job = tmp_path / "dcm", tmp_path / "mha"
    write_dicom_set(array, geometry, dcm_job / "images" / "ct-image")
    entries = _inputs_json(dcm_job, DICOM_SET_KIND)
    write_image(array, geometry, mha_job / "images" / "ct-image" / "ct.mha")
    _inputs_json(mha_job, "Image")
    assert find_socket_image(dcm_job, entries, itf.inputs[0]) == (dcm_job / "images" / "ct-image").resolve()
    shape, geo = socket_geometry(find_socket_image(dcm_job, entries, itf.inputs[0]))
    assert shape == array.shape and geo.differs_from(geometry, 1e-6, 1e-6) is None

    predictor = BundlePredictor.from_bundle(tiny_phantom_bundle, "cpu", tta=False)
    run_job(predictor, itf, dcm_job, tmp_path / "out_dcm")
    run_job(predictor, itf, mha_job, tmp_path / "out_mha")
    seg_dcm, geo_dcm = read_image(tmp_path / "out_dcm" / itf.output.relative_path / OUTPUT_NAME)
    seg_mha, _ = read_image(tmp_path / "out_mha" / itf.output.relative_path / OUTPUT_NAME)
    assert seg_dcm.shape == array.shape and np.array_equal(seg_dcm, seg_mha) and len(np.unique(seg_dcm)) > 1
    assert geo_dcm.differs_from(geometry, 1e-6, 1e-6) is None  # the output lies on the series' grid


def test_dicom_socket_problems_are_one_clear_line(ct, tmp_path):
    array, geometry = ct
    socket = Socket("ct-image", "images/ct-image", (0,))
    job = tmp_path / "job"
    (job / "images" / "ct-image").mkdir(parents=True)
    entries = _inputs_json(job, DICOM_SET_KIND)
    with pytest.raises(SegkitError, match="expected the .dcm files of a DICOM image set, found nothing"):
        find_socket_image(job, entries, socket)
    write_dicom_set(array[:3], geometry, tmp_path / "set")
    write_image(array, geometry, tmp_path / "set" / "extra.mha")
    with pytest.raises(SegkitError, match=r"expected exactly one .mha or .tif, or the .dcm files.*extra.mha"):
        find_socket_image(tmp_path, [{"interface": {"slug": "ct-image", "relative_path": "set"}}], socket)
    (tmp_path / "set" / "extra.mha").unlink()
    with pytest.raises(SegkitError, match=r"is a DICOM image set \(one channel\).*channels \[0, 1\]"):
        stage_socket(tmp_path / "set", Socket("ct-image", "set", None), 2, tmp_path)
