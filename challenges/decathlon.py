"""Medical Segmentation Decathlon (all 10 tasks): MSD ``dataset.json`` + 4D multi-modal NIfTI.

The MSD layout is ``TaskXX_Name/{dataset.json, imagesTr, labelsTr, imagesTs}`` with one file per
case; multi-modal tasks (BrainTumour 4, Prostate 2) store the modalities as the 4th dimension of a
single NIfTI, which is split here into ``_000X`` channel files with the 3D part of the geometry.
The macOS ``._*`` files that ship inside the official archives are skipped.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from challenges.base import Adapter, RawCase, Volume, nonhidden
from toolkit.errors import SegkitError
from toolkit.io.atomic import read_json
from toolkit.io.images import Geometry, read_image


class Decathlon(Adapter):
    name = "decathlon"
    summary = "Medical Segmentation Decathlon task folder (TaskXX_Name with MSD dataset.json)"

    def check_layout(self, raw: Path) -> None:
        self.expect((raw / "dataset.json").is_file() and (raw / "imagesTr").is_dir(), raw,
                    "an MSD task folder with dataset.json, imagesTr/, labelsTr/")
        msd = self._msd(raw)
        self.expect(isinstance(msd.get("training"), list) and isinstance(msd.get("modality"), dict), raw,
                    "dataset.json with 'modality' and a 'training' list", "a dataset.json without them")

    def metadata(self, raw: Path) -> dict[str, Any]:
        msd = self._msd(raw)
        labels = {("background" if int(k) == 0 else str(v)): int(k) for k, v in msd.get("labels", {}).items()}
        meta = super().metadata(raw)
        meta.update({k: msd[k] for k in ("name", "description", "reference", "licence", "release") if k in msd})
        return {**meta, "channel_names": dict(msd["modality"]), "labels": labels}

    def discover(self, raw: Path) -> Iterator[RawCase]:
        msd = self._msd(raw)
        n_channels = len(msd["modality"])
        for entry in msd["training"]:
            image, label = raw / entry["image"], raw / entry["label"]
            if image.name.startswith("."):
                continue
            for p in (image, label):
                if not p.is_file():
                    raise SegkitError(f"dataset.json lists {p.relative_to(raw)} but the file is missing", raw)
            yield RawCase(_case_id(image), _channels(image, n_channels), Volume(label))
        tests = [raw / t for t in msd.get("test", [])] or nonhidden((raw / "imagesTs").glob("*.nii*"))
        for image in tests:
            if not image.name.startswith(".") and image.is_file():
                yield RawCase(_case_id(image), _channels(image, n_channels))

    @staticmethod
    @functools.lru_cache(maxsize=4)
    def _msd(raw: Path) -> dict:
        data = read_json(raw / "dataset.json")
        if not isinstance(data, dict):
            raise SegkitError("dataset.json must hold a JSON object", raw / "dataset.json")
        return data


def _case_id(image: Path) -> str:
    return image.name.split(".nii")[0]


def _channels(image: Path, n_channels: int) -> tuple[Volume, ...]:
    if n_channels == 1:
        return (Volume(image),)
    return tuple(Volume(image, functools.partial(_channel_of, image, c, n_channels)) for c in range(n_channels))


def _channel_of(image: Path, channel: int, n_channels: int) -> tuple[np.ndarray, Geometry]:
    array, geometry = _read_4d(image)
    if array.ndim != 4 or array.shape[0] != n_channels:
        raise SegkitError(f"expected a 4D image with {n_channels} modalities, found shape {array.shape}", image)
    return array[channel], split_geometry(geometry)


@functools.lru_cache(maxsize=1)
def _read_4d(image: Path) -> tuple[np.ndarray, Geometry]:
    return read_image(image)  # cached: the channels of one case are written one after another


def split_geometry(geometry: Geometry) -> Geometry:
    """The 3D geometry of one volume of a 4D image (spacing, origin and the 3x3 direction block)."""
    d = np.asarray(geometry.direction).reshape(geometry.ndim, geometry.ndim)[:3, :3]
    return Geometry(tuple(geometry.spacing_xyz[:3]), tuple(geometry.origin_xyz[:3]), tuple(d.ravel().tolist()))
