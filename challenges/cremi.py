"""CREMI (synaptic clefts in serial-section EM): HDF5 ``volumes/raw`` + ``volumes/labels/clefts``.

Clefts are stored as uint64 ids with background ``0xffffffffffffffff``; every non-background voxel
becomes label 1. The ``resolution`` attribute (z, y, x in nm, (40, 4, 4)) becomes the spacing and an
``offset`` attribute the origin; where the labels cover only part of a padded raw volume, the raw
is cropped to the labelled region. Only three training volumes exist, so the YAML asks for five
3d_fullres models each trained on all data (a fixed ``splits_final.json`` of five identical folds,
each fold its own seed) and ensembled. The submission is HDF5 with the same dataset path, background
convention and attributes.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from challenges.base import Adapter, RawCase, Volume, nonhidden, prediction_files
from toolkit.errors import SegkitError
from toolkit.io.images import Geometry, read_image

RAW, CLEFTS = "volumes/raw", "volumes/labels/clefts"


def _h5py():
    try:
        import h5py
    except ImportError:
        raise SegkitError("the cremi adapter needs h5py (pip install h5py)") from None
    return h5py


class CREMI(Adapter):
    name = "cremi"
    summary = "CREMI synaptic clefts (sample_X_2016XXXX.hdf with volumes/raw, volumes/labels/clefts)"

    def _files(self, raw: Path) -> list[Path]:
        skip = self.config.get("skip_names_containing", [])
        files = nonhidden(p for ext in ("*.hdf", "*.h5", "*.hdf5") for p in raw.glob(ext))
        return [p for p in files if not any(s in p.name for s in skip)]

    def check_layout(self, raw: Path) -> None:
        files = self._files(raw)
        self.expect(bool(files), raw, "CREMI HDF5 files (sample_A_20160501.hdf, ...)")
        h5py = _h5py()
        for path in files:
            with h5py.File(path, "r") as f:
                self.expect(RAW in f, raw, f"a {RAW} dataset in {path.name}", f"groups {sorted(f.keys())}")

    def discover(self, raw: Path) -> Iterator[RawCase]:
        h5py = _h5py()
        background = int(self.config["background"])
        for path in self._files(raw):
            with h5py.File(path, "r") as f:
                labelled = CLEFTS in f
            image = Volume(path, functools.partial(_read, path, RAW, background))
            label = Volume(path, functools.partial(_read, path, CLEFTS, background)) if labelled else None
            yield RawCase(path.stem, (image,), label)

    def splits(self, training_ids: list[str]) -> list[dict[str, list[str]]] | None:
        n = int(self.config.get("training", {}).get("models_on_all_data", 0))
        return [{"train": sorted(training_ids), "val": sorted(training_ids)} for _ in range(n)] or None

    def write_submission(self, pred_dir: Path, out_dir: Path) -> list[Path]:
        h5py = _h5py()
        background = np.uint64(int(self.config["background"]))
        written = []
        for case_id, path in prediction_files(pred_dir):
            labels, geometry = read_image(path)
            clefts = np.where(labels == 0, background, labels.astype(np.uint64))
            target = out_dir / self.submission_name(case_id)
            target.parent.mkdir(parents=True, exist_ok=True)
            with h5py.File(target, "w") as f:
                f.attrs["file_format"] = "0.2"
                ds = f.create_dataset(CLEFTS, data=clefts, dtype=np.uint64, compression="gzip")
                ds.attrs["resolution"] = np.asarray(geometry.spacing, dtype=np.float64)
                if any(geometry.origin_xyz):
                    ds.attrs["offset"] = np.asarray(geometry.origin_xyz[::-1], dtype=np.float64)
            written.append(target)
        return written


def _read(path: Path, dataset: str, background: int) -> tuple[np.ndarray, Geometry]:
    """Raw (cropped to the labelled region where labels carry an offset) or binarised clefts."""
    zero = (0.0, 0.0, 0.0)
    with _h5py().File(path, "r") as f:
        raw, labels = f[RAW], f.get(CLEFTS)
        resolution = np.asarray(raw.attrs.get("resolution", (40.0, 4.0, 4.0)), dtype=np.float64)
        raw_offset = np.asarray(raw.attrs.get("offset", zero), dtype=np.float64)
        region = labels if labels is not None else raw
        offset = np.asarray(region.attrs.get("offset", raw_offset), dtype=np.float64)
        start = np.round((offset - raw_offset) / resolution).astype(int)
        if np.any(start < 0) or np.any(start + region.shape > np.asarray(raw.shape)):
            raise SegkitError(f"labels {region.shape} at offset {offset.tolist()} lie outside the raw volume "
                              f"{raw.shape}", path)
        window = tuple(slice(s, s + n) for s, n in zip(start, region.shape, strict=True))
        array = raw[window] if dataset == RAW else (labels[...] != np.uint64(background)).astype(np.uint8)
    geometry = Geometry(tuple(resolution[::-1].tolist()), tuple(offset[::-1].tolist()),
                        (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0))
    return array, geometry
