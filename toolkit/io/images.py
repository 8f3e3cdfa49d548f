"""Reading and writing medical images with their exact geometry.

Arrays are returned in numpy order of a SimpleITK array, ``(z, y, x)`` for 3D and ``(y, x)`` for 2D.
Geometry is kept in SimpleITK's own (x, y, z) order so that writing restores it bit for bit; the
``spacing`` property gives the (z, y, x) spacing that the rest of the engine uses.

Formats are looked up by file ending in a small registry: SimpleITK serves ``.nii.gz``, ``.nii``,
``.mha``, ``.mhd``, ``.nrrd`` and ``.nhdr``; other readers can be added with :func:`register_format`.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from toolkit.errors import SegkitError
from toolkit.io.atomic import create_temp_dir
from toolkit.io.integrity import nifti_truncation


@dataclass(frozen=True)
class Geometry:
    """Physical placement of an image, in SimpleITK's (x, y, z) order."""

    spacing_xyz: tuple[float, ...]
    origin_xyz: tuple[float, ...]
    direction: tuple[float, ...]  # row-major ndim x ndim matrix, flattened

    @property
    def spacing(self) -> tuple[float, ...]:
        """Spacing in array order (z, y, x)."""
        return tuple(reversed(self.spacing_xyz))

    @property
    def ndim(self) -> int:
        return len(self.spacing_xyz)

    def to_json(self) -> dict:
        return {
            "spacing_xyz": list(self.spacing_xyz),
            "origin_xyz": list(self.origin_xyz),
            "direction": list(self.direction),
        }

    @classmethod
    def from_json(cls, data: dict) -> Geometry:
        return cls(tuple(data["spacing_xyz"]), tuple(data["origin_xyz"]), tuple(data["direction"]))

    def differs_from(self, other: Geometry, rel_tol: float = 1e-3, dir_tol: float = 1e-4) -> str | None:
        """Return which property differs beyond tolerance (spacing/origin relative, direction absolute)."""
        if self.ndim != other.ndim:
            return f"dimension {self.ndim}D vs {other.ndim}D"
        a, b = np.asarray(self.spacing_xyz), np.asarray(other.spacing_xyz)
        if not np.allclose(a, b, rtol=rel_tol, atol=0):
            return f"spacing {_fmt(self.spacing)} vs {_fmt(other.spacing)}"
        a, b = np.asarray(self.origin_xyz), np.asarray(other.origin_xyz)
        scale = np.maximum(np.abs(a), np.abs(b)).max(initial=1.0)
        if np.abs(a - b).max(initial=0.0) > rel_tol * max(scale, 1.0):
            return f"origin {_fmt(self.origin_xyz)} vs {_fmt(other.origin_xyz)}"
        if np.abs(np.asarray(self.direction) - np.asarray(other.direction)).max(initial=0.0) > dir_tol:
            return "direction differs"
        return None


def _fmt(values) -> str:
    return "(" + ", ".join(f"{v:.4g}" for v in values) + ")"


Reader = Callable[[Path], "tuple[np.ndarray, Geometry]"]
Writer = Callable[[np.ndarray, Geometry, Path], None]
_FORMATS: dict[str, tuple[Reader, Writer]] = {}


def register_format(ending: str, reader: Reader, writer: Writer) -> None:
    """Register a reader/writer pair for a file ending such as ``.tif``."""
    _FORMATS[ending.lower()] = (reader, writer)


def supported_endings() -> list[str]:
    return sorted(_FORMATS, key=len, reverse=True)


def ending_of(path: str | Path) -> str:
    """The registered ending of ``path`` (longest match, so ``.nii.gz`` wins over ``.gz``)."""
    name = Path(path).name.lower()
    for ending in supported_endings():
        if name.endswith(ending):
            return ending
    raise SegkitError(f"unsupported file ending (supported: {', '.join(sorted(_FORMATS))})", path)


def _sitk():
    import SimpleITK as sitk

    # ITK prints warnings about metadata it cannot carry over; they are noise for our users.
    sitk.ProcessObject_SetGlobalWarningDisplay(False)
    return sitk


def _sitk_geometry(img) -> Geometry:
    return Geometry(tuple(img.GetSpacing()), tuple(img.GetOrigin()), tuple(img.GetDirection()))


def _sitk_read(path: Path) -> tuple[np.ndarray, Geometry]:
    sitk = _sitk()
    if problem := nifti_truncation(path):
        raise SegkitError(problem if problem.startswith("empty") else f"unreadable image ({problem})", path)
    try:
        img = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        raise SegkitError(f"unreadable image ({_first_line(exc)})", path) from None
    if img.GetNumberOfComponentsPerPixel() != 1:
        raise SegkitError(
            f"has {img.GetNumberOfComponentsPerPixel()} components per voxel; store each channel as its own file",
            path,
        )
    return sitk.GetArrayFromImage(img), _sitk_geometry(img)


def _sitk_write(array: np.ndarray, geometry: Geometry, path: Path) -> None:
    sitk = _sitk()
    if array.dtype == np.bool_:
        array = array.astype(np.uint8)
    if array.dtype == np.float16:
        array = array.astype(np.float32)
    img = sitk.GetImageFromArray(array, isVector=False)
    if img.GetDimension() != geometry.ndim:
        raise SegkitError(f"array is {array.ndim}D but geometry is {geometry.ndim}D", path)
    img.SetSpacing(geometry.spacing_xyz)
    img.SetOrigin(geometry.origin_xyz)
    img.SetDirection(geometry.direction)
    sitk.WriteImage(img, str(path), useCompression=True)


def _first_line(exc: Exception) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    # ITK messages put the useful sentence after a "Description:" marker.
    for ln in lines:
        if "Description" in ln:
            return ln.split("Description:", 1)[-1].strip()
    return lines[-1] if lines else type(exc).__name__


for _ending in (".nii.gz", ".nii", ".mha", ".mhd", ".nrrd", ".nhdr"):
    register_format(_ending, _sitk_read, _sitk_write)


def read_image(path: str | Path) -> tuple[np.ndarray, Geometry]:
    """Read one image file; returns (array in (z, y, x) order, geometry)."""
    path = Path(path)
    reader, _ = _FORMATS[ending_of(path)]
    if not path.is_file():
        raise SegkitError("file not found", path)
    return reader(path)


def read_geometry(path: str | Path) -> tuple[tuple[int, ...], Geometry]:
    """Read only the header: (shape in array order, geometry). Cheap for large files."""
    path = Path(path)
    ending = ending_of(path)
    if _FORMATS[ending][0] is not _sitk_read:
        array, geometry = read_image(path)
        return array.shape, geometry
    sitk = _sitk()
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as exc:
        raise SegkitError(f"unreadable image header ({_first_line(exc)})", path) from None
    geometry = Geometry(tuple(reader.GetSpacing()), tuple(reader.GetOrigin()), tuple(reader.GetDirection()))
    return tuple(reversed(reader.GetSize())), geometry


def write_image(array: np.ndarray, geometry: Geometry, path: str | Path) -> None:
    """Write ``array`` with ``geometry`` atomically (temporary folder beside ``path``, then rename).

    A temporary folder rather than a temporary name because header+data formats (``.mhd``/``.raw``)
    record the data file's name inside the header.
    """
    path = Path(path)
    _, writer = _FORMATS[ending_of(path)]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = create_temp_dir(path.parent, prefix=f".{path.name}.")
    try:
        writer(array, geometry, tmp_dir / path.name)
        for produced in tmp_dir.iterdir():
            os.replace(produced, path.parent / produced.name)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)


def read_case_images(paths: list[Path]) -> tuple[np.ndarray, Geometry]:
    """Read the channel files of one case into a (c, z, y, x) float32 array.

    Channels must share a grid; the first channel's geometry is the case's geometry.
    """
    arrays, geometry = [], None
    for p in paths:
        array, geo = read_image(p)
        if geometry is None:
            geometry = geo
        else:
            diff = geo.differs_from(geometry)
            if diff or array.shape != arrays[0].shape:
                what = diff or f"shape {array.shape} vs {arrays[0].shape}"
                raise SegkitError(f"channel does not match channel 0: {what}", p)
        arrays.append(array.astype(np.float32, copy=False))
    if geometry is None:
        raise SegkitError("case has no image files")
    return np.stack(arrays), geometry
