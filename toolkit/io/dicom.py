"""Reading one DICOM series as a volume, slices in physical order, geometry from the DICOM tags.

File names say nothing about where a slice lies: on real TCIA series, name order is not position
order, and stacking by name gives a scrambled volume with a wrong slice spacing and no error. So the
slices are ordered by ImagePositionPatient (0020,0032) projected on the slice normal (the cross product
of the two ImageOrientationPatient (0020,0037) direction cosines), the slice spacing is the distance
between consecutive positions, and the in-plane spacing is PixelSpacing (0028,0030). A series whose
slices cannot form one regular grid (missing tags, two slices at one position, mixed orientations,
gaps that differ by more than ``tolerance``, slices not stacked along their normal) is a one-line
:class:`SegkitError` naming the folder or file, never a silently wrong volume.

Only SimpleITK (a runtime dependency) is used: ``ImageFileReader.ReadImageInformation`` reads the tags
of each file and ``ImageSeriesReader`` the pixels (rescale slope/intercept applied by GDCM). The array is
in the project's ``(z, y, x)`` order, as :func:`toolkit.io.images.read_image` gives for the same volume
stored as NIfTI.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from toolkit.errors import SegkitError
from toolkit.io.images import Geometry

#: Default relative tolerance: slice gaps may differ from their median by at most 1 %.
SPACING_TOLERANCE = 0.01

_POSITION, _ORIENTATION, _PIXEL_SPACING = "0020|0032", "0020|0037", "0028|0030"
_SERIES_UID, _ROWS, _COLUMNS = "0020|000e", "0028|0010", "0028|0011"
_SPACING_BETWEEN, _THICKNESS = "0018|0088", "0018|0050"


@dataclass(frozen=True)
class DicomSeries:
    """A series' files in physical order (slice k of the volume is ``files[k]``) and its geometry."""

    files: tuple[Path, ...]
    geometry: Geometry
    shape: tuple[int, int, int]  # (z, y, x)


@dataclass(frozen=True)
class _Slice:
    path: Path
    position: np.ndarray
    orientation: np.ndarray
    pixel_spacing: tuple[float, float]  # (row spacing = y, column spacing = x)
    size: tuple[int, int]  # (rows, columns)
    series_uid: str
    slice_gap: float | None  # SpacingBetweenSlices or SliceThickness, for one-slice series only


def series_files(source: str | Path | Sequence[str | Path]) -> list[Path]:
    """The files of a series: a list as given, or a folder's ``*.dcm`` files (all files if it has none)."""
    if isinstance(source, (str, Path)):
        folder = Path(source)
        if not folder.is_dir():
            raise SegkitError("DICOM series folder not found", folder)
        files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
        dcm = [p for p in files if p.suffix.lower() == ".dcm"]
        files = dcm or [p for p in files if p.name.upper() != "DICOMDIR"]
        if not files:
            raise SegkitError("holds no DICOM files", folder)
        return files
    files = [Path(p) for p in source]
    if not files:
        raise SegkitError("empty list of DICOM files")
    return files


def _numbers(reader, key: str, count: int, path: Path) -> np.ndarray:
    if not reader.HasMetaDataKey(key):
        raise SegkitError(f"DICOM tag ({key.replace('|', ',')}) is missing; cannot place the slice", path)
    text = reader.GetMetaData(key).strip().strip("\x00")
    try:
        values = np.array([float(v) for v in text.split("\\")], dtype=np.float64)
    except ValueError:
        values = np.array([])
    if values.size != count or not np.all(np.isfinite(values)):
        raise SegkitError(f"DICOM tag ({key.replace('|', ',')}) is {text!r}, expected {count} numbers", path)
    return values


def _float_tag(reader, key: str) -> float | None:
    try:
        return abs(float(reader.GetMetaData(key).strip())) if reader.HasMetaDataKey(key) else None
    except ValueError:
        return None


def _read_slice(path: Path) -> _Slice:
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetImageIO("GDCMImageIO")
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        raise SegkitError("not a readable DICOM file", path) from None
    if reader.GetDimension() == 3 and reader.GetSize()[2] > 1:
        raise SegkitError(f"multi-frame DICOM ({reader.GetSize()[2]} frames) is not supported; "
                          "expected one file per slice", path)
    gap = next((g for g in (_float_tag(reader, k) for k in (_SPACING_BETWEEN, _THICKNESS)) if g), None)
    spacing = _numbers(reader, _PIXEL_SPACING, 2, path)
    if np.any(spacing <= 0):
        raise SegkitError(f"DICOM PixelSpacing (0028,0030) {tuple(spacing)} is not positive", path)
    uid = reader.GetMetaData(_SERIES_UID).strip().strip("\x00") if reader.HasMetaDataKey(_SERIES_UID) else ""
    size = reader.GetSize()
    return _Slice(path, _numbers(reader, _POSITION, 3, path), _numbers(reader, _ORIENTATION, 6, path),
                  (float(spacing[0]), float(spacing[1])), (int(size[1]), int(size[0])), uid, gap)


def _where(files: list[Path]) -> Path:
    """The folder to name in an error about the whole series."""
    parents = {p.parent for p in files}
    return parents.pop() if len(parents) == 1 else files[0]


def _check_uniform(slices: list[_Slice], where: Path) -> np.ndarray:
    """All slices of one series, one orientation, one pixel grid; returns the 3x3 direction matrix."""
    first = slices[0]
    for s in slices[1:]:
        if s.series_uid != first.series_uid:
            raise SegkitError(f"holds more than one DICOM series (SeriesInstanceUID {first.series_uid!r} "
                              f"and {s.series_uid!r}); give one series", where)
        if np.abs(s.orientation - first.orientation).max() > 1e-4:
            raise SegkitError(f"mixed slice orientations (ImageOrientationPatient {s.path.name} differs "
                              f"from {first.path.name})", where)
        if s.size != first.size:
            raise SegkitError(f"slice sizes differ ({s.path.name} {s.size} vs {first.path.name} {first.size})",
                              where)
        if not np.allclose(s.pixel_spacing, first.pixel_spacing, rtol=1e-4):
            raise SegkitError(f"pixel spacings differ ({s.path.name} {s.pixel_spacing} vs {first.path.name} "
                              f"{first.pixel_spacing})", where)
    row, col = first.orientation[:3], first.orientation[3:]
    if abs(np.linalg.norm(row) - 1) > 1e-3 or abs(np.linalg.norm(col) - 1) > 1e-3 or abs(row @ col) > 1e-3:
        raise SegkitError(f"ImageOrientationPatient {tuple(first.orientation)} is not two orthonormal vectors",
                          first.path)
    normal = np.cross(row, col)
    return np.stack([row, col, normal / np.linalg.norm(normal)], axis=1)  # columns: x, y, z axes


def _slice_spacing(ordered: list[_Slice], depths: np.ndarray, normal: np.ndarray, tolerance: float,
                   where: Path) -> float:
    """The one distance between consecutive slices; an error for duplicates, gaps or tilted stacks."""
    if len(ordered) == 1:
        return ordered[0].slice_gap or 1.0
    gaps = np.diff(depths)
    dup = int(np.argmin(gaps))
    if gaps[dup] <= 1e-3:
        raise SegkitError(f"two slices at the same position ({ordered[dup].path.name} and "
                          f"{ordered[dup + 1].path.name}, ImagePositionPatient {tuple(ordered[dup].position)})", where)
    median = float(np.median(gaps))
    worst = int(np.argmax(np.abs(gaps - median)))
    if abs(gaps[worst] - median) > tolerance * median:
        hint = "; a slice may be missing" if gaps[worst] > median else ""
        raise SegkitError(f"uneven slice spacing: {gaps[worst]:.4g} mm between {ordered[worst].path.name} and "
                          f"{ordered[worst + 1].path.name}, {median:.4g} mm elsewhere (tolerance "
                          f"{tolerance * 100:.3g}%){hint}", where)
    steps = np.diff(np.stack([s.position for s in ordered]), axis=0)
    off_axis = np.linalg.norm(steps - np.outer(steps @ normal, normal), axis=1)
    if off_axis.max() > tolerance * median:
        raise SegkitError(f"slices are not stacked along their normal (offset {off_axis.max():.3g} mm per slice: "
                          "gantry tilt or a sheared series), which one direction matrix cannot describe", where)
    return float((depths[-1] - depths[0]) / (len(depths) - 1))


def dicom_series(source: str | Path | Sequence[str | Path], tolerance: float = SPACING_TOLERANCE) -> DicomSeries:
    """Order a series' files by position along the slice normal and derive its geometry from the tags."""
    if not tolerance > 0:
        raise SegkitError(f"DICOM spacing tolerance must be positive, got {tolerance}")
    files = series_files(source)
    where = _where(files)
    slices = [_read_slice(p) for p in files]
    direction = _check_uniform(slices, where)
    normal = direction[:, 2]
    depths_unsorted = np.array([s.position @ normal for s in slices])
    order = np.argsort(depths_unsorted, kind="stable")
    ordered = [slices[i] for i in order]
    z = _slice_spacing(ordered, depths_unsorted[order], normal, tolerance, where)
    row_spacing, col_spacing = ordered[0].pixel_spacing
    geometry = Geometry((col_spacing, row_spacing, z), tuple(float(v) for v in ordered[0].position),
                        tuple(float(v) for v in direction.reshape(-1)))
    rows, cols = ordered[0].size
    return DicomSeries(tuple(s.path for s in ordered), geometry, (len(ordered), rows, cols))


def read_dicom_series(source: str | Path | Sequence[str | Path],
                      tolerance: float = SPACING_TOLERANCE) -> tuple[np.ndarray, Geometry]:
    """Read a DICOM series (a folder or its files) as ``(array (z, y, x), geometry)`` in physical order."""
    series = dicom_series(source, tolerance)
    return read_series_pixels(series), series.geometry


def read_series_pixels(series: DicomSeries) -> np.ndarray:
    """The pixels of ``series`` stacked in its (physical) file order, rescale slope/intercept applied."""
    import SimpleITK as sitk

    reader = sitk.ImageSeriesReader()
    reader.SetImageIO("GDCMImageIO")
    reader.SetFileNames([str(p) for p in series.files])
    try:
        image = reader.Execute()
    except RuntimeError as exc:
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        raise SegkitError(f"unreadable DICOM pixels ({lines[-1] if lines else 'unknown error'})",
                          _where(list(series.files))) from None
    array = sitk.GetArrayFromImage(image)
    if array.shape != series.shape:
        raise SegkitError(f"DICOM pixels have shape {array.shape}, the tags say {series.shape}",
                          _where(list(series.files)))
    return array
