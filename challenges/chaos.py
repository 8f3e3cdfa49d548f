"""CHAOS Tasks 3 and 5 (abdominal MRI): DICOM series + PNG ground-truth slices, PNG submission.

Layout: ``{Train,Test}_Sets/MR/<patient>/T1DUAL/DICOM_anon/{InPhase,OutPhase}/*.dcm``,
``T2SPIR/DICOM_anon/*.dcm`` and ``<sequence>/Ground/*.png`` (grey value per organ). As in the paper,
T1 in-phase and out-phase become two training cases sharing the T1 label (``<p>_T1in``,
``<p>_T1out``), T2 its own case (``<p>_T2``), all grouped by patient.

Slice order. The challenge defines slice k of a volume as the k-th DICOM file by file name and the
k-th ground-truth (and submitted) PNG in natural name order as its label; its evaluation code says
"the orientation of the slices is determined by order of image names NOT by position tags"
(github.com/emrekavur/CHAOS-evaluation, ``Python/CHAOSmetrics.py``; ``Matlab/getVolumeFromPngSlices.m``
sorts the PNGs with ``natsortfiles``). File-name order need not be position order, so the volume is
assembled in physical order (:mod:`toolkit.io.dicom`) and each PNG is paired with the DICOM file of
the same name rank. ``chaos_slice_order.json`` in the converted dataset records, per case, the
challenge index of every physical slice; ``segkit submission chaos PRED OUT -O dataset=<converted
dataset>`` uses it to write slice k of a prediction back under its challenge index.
At submission the in/out-phase probabilities of a patient are averaged (needs ``.npz`` files from
``segkit predict --save-probabilities``), and Task 3 (liver) is extracted from the Task 5 labels.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from challenges.base import FACT_KEYS, Adapter, RawCase, Volume, nonhidden, prediction_files
from toolkit.errors import SegkitError
from toolkit.io.dicom import DicomSeries, dicom_series, read_series_pixels
from toolkit.io.images import Geometry, read_image

SLICE_ORDER_FILE = "chaos_slice_order.json"

_SERIES = {"T1in": ("T1DUAL", "DICOM_anon/InPhase"), "T1out": ("T1DUAL", "DICOM_anon/OutPhase"),
           "T2": ("T2SPIR", "DICOM_anon")}


class CHAOS(Adapter):
    name = "chaos"
    summary = "CHAOS Tasks 3+5 abdominal MRI (DICOM series, PNG ground truth, PNG submission)"
    facts = (*FACT_KEYS, "grey_ranges", "grey_values", "tasks", "png_name")

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
                    image = Volume(series, functools.partial(_read_volume, series))
                    ground = patient / sequence / "Ground"
                    label = Volume(ground, functools.partial(self._label, ground, series)) if labelled else None
                    yield RawCase(f"{patient.name}_{kind}", (image,), label, group=patient.name)

    def sidecars(self, cases: list[RawCase]) -> dict[str, Any]:
        """Per case, the challenge's index (file-name rank) of each physical slice, for the submission."""
        orders = {}
        for case in cases:
            series = _series(case.images[0].path)
            orders[case.id] = challenge_order(series)
            if case.id.endswith("_T1out"):  # the T1 in/out phases share one Ground folder and one slice order
                partner = case.images[0].path.with_name("InPhase")
                if challenge_order(_series(partner)) != orders[case.id] or \
                        (diff := _series(partner).geometry.differs_from(series.geometry)):
                    raise SegkitError(f"in- and out-phase series do not share their slices "
                                      f"({diff or 'slice order differs'}); the T1 ground truth fits only one",
                                      case.images[0].path)
        return {SLICE_ORDER_FILE: orders}

    def _label(self, ground: Path, series_folder: Path) -> tuple[np.ndarray, Geometry]:
        import SimpleITK as sitk

        series = _series(series_folder)
        pngs = sorted(nonhidden(ground.glob("*.png")), key=lambda p: natural_key(p.name))
        if len(pngs) != series.shape[0]:
            raise SegkitError(f"{len(pngs)} ground-truth PNGs for {series.shape[0]} DICOM slices in "
                              f"{series_folder.name}", ground)
        # physical slice k is the DICOM file of name rank order[k], whose label is the PNG of that rank
        order = challenge_order(series)
        grey = np.stack([sitk.GetArrayFromImage(sitk.ReadImage(str(pngs[rank]))) for rank in order])
        if grey.shape != series.shape:
            raise SegkitError(f"PNG slices {grey.shape[1:]} do not match the DICOM slices {series.shape[1:]}", ground)
        label = np.zeros(grey.shape, np.uint8)
        for value, (low, high) in self.config["grey_ranges"].items():
            label[(grey > low) & (grey <= high)] = int(value)
        return label, series.geometry

    def write_submission(self, pred_dir: Path, out_dir: Path) -> list[Path]:
        preds = dict(prediction_files(pred_dir))
        orders = self._slice_orders()
        patients = sorted({c.rsplit("_", 1)[0] for c in preds})
        written: list[Path] = []
        for patient in patients:
            results = {}
            if f"{patient}_T1in" in preds or f"{patient}_T1out" in preds:
                results["T1DUAL"] = (_average_t1(pred_dir, patient), _order_of(orders, f"{patient}_T1in"))
            if f"{patient}_T2" in preds:
                results["T2SPIR"] = (read_image(preds[f"{patient}_T2"])[0], _order_of(orders, f"{patient}_T2"))
            for sequence, (labels, order) in results.items():
                if len(order) != labels.shape[0]:
                    raise SegkitError(f"prediction has {labels.shape[0]} slices, the {sequence} series "
                                      f"{len(order)}", pred_dir / patient)
                for task, keep in self.config["tasks"].items():
                    folder = out_dir / task / "MR" / patient / sequence / "Results"
                    written += self._write_pngs(labels, order, keep, folder)
        if not written:
            raise SegkitError("no <patient>_T1in/_T1out/_T2 predictions found", pred_dir)
        return written

    def _slice_orders(self) -> dict[str, list[int]]:
        dataset = self.config.get("dataset")
        if not dataset:
            raise SegkitError("a CHAOS submission needs the challenge's slice order of the test series: "
                              "give -O dataset=<the folder segkit convert chaos wrote>")
        path = Path(dataset) / SLICE_ORDER_FILE
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise SegkitError("not found; convert the download again with this segkit version", path) from None
        except (OSError, ValueError) as exc:
            raise SegkitError(f"unreadable slice order ({exc})", path) from None

    def _write_pngs(self, labels: np.ndarray, order: list[int], keep: list[int], folder: Path) -> list[Path]:
        """Physical slice k becomes the PNG of challenge index ``order[k]``."""
        import SimpleITK as sitk

        grey = np.zeros(labels.shape, np.uint8)
        for value, level in self.config["grey_values"].items():
            if int(value) in keep:
                grey[labels == int(value)] = level
        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        for k, plane in enumerate(grey):
            path = folder / self.config["png_name"].format(index=order[k])
            sitk.WriteImage(sitk.GetImageFromArray(plane), str(path))
            paths.append(path)
        return sorted(paths)


def natural_key(name: str) -> list:
    """Natural sort key (``img2`` before ``img10``), as the challenge's MATLAB ``natsortfiles``."""
    return [(0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", name) if t]


def challenge_order(series: DicomSeries) -> list[int]:
    """For each physical slice k, the challenge's index of that slice: its DICOM file's name rank."""
    rank = {p: i for i, p in enumerate(sorted(series.files, key=lambda p: p.name))}
    return [rank[p] for p in series.files]


def _order_of(orders: dict[str, list[int]], case: str) -> list[int]:
    if case not in orders:
        raise SegkitError(f"{SLICE_ORDER_FILE} has no slice order for {case!r}; was this dataset converted "
                          "from the same CHAOS download?")
    return [int(i) for i in orders[case]]


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


@functools.lru_cache(maxsize=512)
def _series(folder: Path) -> DicomSeries:
    """A series' files in physical order and geometry (tags only; cached: label and sidecar reuse it)."""
    return dicom_series(folder)


@functools.lru_cache(maxsize=2)
def _read_volume(folder: Path) -> tuple[np.ndarray, Geometry]:
    series = _series(folder)
    return read_series_pixels(series), series.geometry
