"""CHAOS Tasks 3 and 5 (abdominal MRI): DICOM series + PNG ground-truth slices, PNG submission.

Layout: ``{Train,Test}_Sets/MR/<patient>/T1DUAL/DICOM_anon/{InPhase,OutPhase}/*.dcm``,
``T2SPIR/DICOM_anon/*.dcm`` and ``<sequence>/Ground/*.png`` (grey value per organ). As in the paper,
T1 in-phase and out-phase become two training cases sharing the T1 label (``<p>_T1in``,
``<p>_T1out``), T2 its own case (``<p>_T2``), all grouped by patient.

Slice order: the volume's slice k is the k-th DICOM file by name, and the k-th ground-truth PNG by
name is its label; the submission writes slice k as the k-th PNG, so the mapping is its own inverse.
At submission the in/out-phase probabilities of a patient are averaged (needs ``.npz`` files from
``segkit predict --save-probabilities``), and Task 3 (liver) is extracted from the Task 5 labels.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from challenges.base import Adapter, RawCase, Volume, nonhidden, prediction_files
from toolkit.errors import SegkitError
from toolkit.io.images import Geometry, read_image

_SERIES = {"T1in": ("T1DUAL", "DICOM_anon/InPhase"), "T1out": ("T1DUAL", "DICOM_anon/OutPhase"),
           "T2": ("T2SPIR", "DICOM_anon")}


class CHAOS(Adapter):
    name = "chaos"
    summary = "CHAOS Tasks 3+5 abdominal MRI (DICOM series, PNG ground truth, PNG submission)"

    def _mr_folders(self, raw: Path) -> list[tuple[Path, bool]]:
        found = []
        for split, labelled in (("Train_Sets", True), ("Test_Sets", False)):
            for mr in (raw / split / "MR", *raw.glob(f"*/{split}/MR")):
                if mr.is_dir():
                    found.append((mr, labelled))
        return found

    def check_layout(self, raw: Path) -> None:
        self.expect(any(labelled for _, labelled in self._mr_folders(raw)), raw,
                    "Train_Sets/MR/<patient>/{T1DUAL,T2SPIR}/DICOM_anon (in RAW or one folder below)")

    def discover(self, raw: Path) -> Iterator[RawCase]:
        for mr, labelled in self._mr_folders(raw):
            for patient in nonhidden(p for p in mr.iterdir() if p.is_dir()):
                for kind, (sequence, sub) in _SERIES.items():
                    series = patient / sequence / sub
                    if not series.is_dir():
                        raise SegkitError(f"expected the DICOM folder {sequence}/{sub}", patient)
                    image = Volume(series, functools.partial(read_dicom_series, series))
                    label = Volume(patient / sequence / "Ground", functools.partial(
                        self._label, patient / sequence / "Ground", series)) if labelled else None
                    yield RawCase(f"{patient.name}_{kind}", (image,), label, group=patient.name)

    def _label(self, ground: Path, series: Path) -> tuple[np.ndarray, Geometry]:
        import SimpleITK as sitk

        pngs = nonhidden(ground.glob("*.png"))
        image, geometry = read_dicom_series(series)
        if len(pngs) != image.shape[0]:
            raise SegkitError(f"{len(pngs)} ground-truth PNGs for {image.shape[0]} DICOM slices in {series.name}",
                              ground)
        grey = np.stack([sitk.GetArrayFromImage(sitk.ReadImage(str(p))) for p in pngs])
        if grey.shape != image.shape:
            raise SegkitError(f"PNG slices {grey.shape[1:]} do not match the DICOM slices {image.shape[1:]}", ground)
        label = np.zeros(grey.shape, np.uint8)
        for value, (low, high) in self.config["grey_ranges"].items():
            label[(grey > low) & (grey <= high)] = int(value)
        return label, geometry

    def write_submission(self, pred_dir: Path, out_dir: Path) -> list[Path]:
        preds = dict(prediction_files(pred_dir))
        patients = sorted({c.rsplit("_", 1)[0] for c in preds})
        written: list[Path] = []
        for patient in patients:
            results = {}
            if f"{patient}_T1in" in preds or f"{patient}_T1out" in preds:
                results["T1DUAL"] = _average_t1(pred_dir, patient)
            if f"{patient}_T2" in preds:
                results["T2SPIR"] = read_image(preds[f"{patient}_T2"])[0]
            for sequence, labels in results.items():
                for task, keep in self.config["tasks"].items():
                    folder = out_dir / task / "MR" / patient / sequence / "Results"
                    written += self._write_pngs(labels, keep, folder)
        if not written:
            raise SegkitError("no <patient>_T1in/_T1out/_T2 predictions found", pred_dir)
        return written

    def _write_pngs(self, labels: np.ndarray, keep: list[int], folder: Path) -> list[Path]:
        import SimpleITK as sitk

        grey = np.zeros(labels.shape, np.uint8)
        for value, level in self.config["grey_values"].items():
            if int(value) in keep:
                grey[labels == int(value)] = level
        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        for k, plane in enumerate(grey):
            path = folder / self.config["png_name"].format(index=k)
            sitk.WriteImage(sitk.GetImageFromArray(plane), str(path))
            paths.append(path)
        return paths


def _average_t1(pred_dir: Path, patient: str) -> np.ndarray:
    """Average the in- and out-phase probabilities of one patient and take the argmax."""
    probs = []
    for kind in ("T1in", "T1out"):
        path = pred_dir / f"{patient}_{kind}.npz"
        if not path.is_file():
            raise SegkitError("missing: CHAOS averages the T1 in/out-phase probabilities; "
                              "run segkit predict with --save-probabilities", path)
        with np.load(path) as npz:
            key = "probabilities" if "probabilities" in npz.files else npz.files[0]
            probs.append(npz[key].astype(np.float32))
    if probs[0].shape != probs[1].shape:
        raise SegkitError(f"in/out-phase probabilities differ in shape {probs[0].shape} vs {probs[1].shape}",
                          pred_dir / f"{patient}_T1out.npz")
    return np.argmax((probs[0] + probs[1]) / 2, axis=0).astype(np.uint8)


@functools.lru_cache(maxsize=2)
def read_dicom_series(folder: Path) -> tuple[np.ndarray, Geometry]:
    """One DICOM series, slices in file-name order (the order of CHAOS's ground-truth PNGs)."""
    import SimpleITK as sitk

    files = [str(p) for p in nonhidden(folder.glob("*.dcm"))]
    if len(files) < 2:
        raise SegkitError(f"expected a DICOM series (*.dcm), found {len(files)} file(s)", folder)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(files)
    try:
        img = reader.Execute()
    except RuntimeError as exc:
        raise SegkitError(f"unreadable DICOM series ({str(exc).strip().splitlines()[-1]})", folder) from None
    geometry = Geometry(tuple(img.GetSpacing()), tuple(img.GetOrigin()), tuple(img.GetDirection()))
    return sitk.GetArrayFromImage(img), geometry
