"""How the folder adapter turns source files into canonical arrays when a byte copy will not do.

Three cases need reading: plain 2D image formats (PNG/TIFF/JPEG carry no physical spacing, so the
spacing comes from the YAML, and an RGB file is either an error or, when the dataset declares one
channel name per colour, its colours become the channels), label files whose values are mapped by a
``label_values`` table (ISBI EM: 0 -> membrane 1, 255 -> background 0), and one mask file per
structure merged into one label map (TotalSegmentator). Structure masks must lie on the image's grid:
nothing is resampled, a mismatch is an error naming the mask.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from toolkit.errors import SegkitError
from toolkit.io.images import Geometry, read_geometry, read_image, supported_endings

PLAIN_ENDINGS = (".png", ".tiff", ".tif", ".jpeg", ".jpg")
LOSSY_ENDINGS = (".jpeg", ".jpg")


def is_plain(path: Path) -> bool:
    """A 2D image format without physical geometry (PNG, TIFF, JPEG)."""
    return path.name.lower().endswith(PLAIN_ENDINGS)


def check_ending(path: Path) -> None:
    """Fail early, naming the file, on an ending neither SimpleITK's medical formats nor plain 2D formats."""
    name = path.name.lower()
    if is_plain(path) or any(name.endswith(e) for e in supported_endings()):
        return
    known = ", ".join(sorted({*supported_endings(), *PLAIN_ENDINGS}))
    raise SegkitError(f"unsupported file ending (the folder adapter reads {known})", path)


def _sitk():
    import SimpleITK as sitk

    sitk.ProcessObject_SetGlobalWarningDisplay(False)
    return sitk


def _fmt_size(shape: tuple[int, ...]) -> str:
    return "x".join(str(s) for s in shape)


def read_header(path: Path, problem: str = "unreadable image") -> Any:
    """A SimpleITK reader holding ``path``'s header only (no pixels); ``problem`` names the one-line error."""
    reader = _sitk().ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        raise SegkitError(problem, path) from None
    return reader


def plain_size(path: Path) -> tuple[tuple[int, ...], int]:
    """(shape in array order, components per pixel) of a plain image, from its header only."""
    reader = read_header(path)
    return tuple(reversed(reader.GetSize())), reader.GetNumberOfComponents()


def plain_geometry(path: Path, spacing: list[float] | None, ndim: int) -> Geometry:
    """The geometry of a plain image: YAML spacing (array order), origin 0, identity direction."""
    if not spacing:
        raise SegkitError("PNG/TIFF/JPEG files carry no physical spacing; set spacing: [y, x] in mm "
                          "(array order) in the YAML or with -O 'spacing=[1, 1]'", path)
    if len(spacing) != ndim:
        raise SegkitError(f"spacing {list(spacing)} has {len(spacing)} values but the image is {ndim}D", path)
    if any(float(s) <= 0 for s in spacing):
        raise SegkitError(f"spacing {list(spacing)} must be positive", path)
    identity = tuple(float(i == j) for i in range(ndim) for j in range(ndim))
    return Geometry(tuple(float(s) for s in reversed(spacing)), (0.0,) * ndim, identity)


def _read_plain(path: Path, spacing: list[float] | None) -> tuple[np.ndarray, Geometry, int]:
    """(array, geometry, components); colour components are the last array axis."""
    sitk = _sitk()
    if not path.is_file():
        raise SegkitError("file not found", path)
    try:
        img = sitk.ReadImage(str(path))
    except RuntimeError:
        raise SegkitError("unreadable image", path) from None
    return sitk.GetArrayFromImage(img), plain_geometry(path, spacing, img.GetDimension()), \
        img.GetNumberOfComponentsPerPixel()


def _check_size(path: Path, shape: tuple[int, ...], reference: Path | None) -> None:
    """Every file of a case must have the size of the case's first image (nothing is resampled)."""
    if reference is None or reference == path:
        return
    ref_shape = plain_size(reference)[0] if is_plain(reference) else read_geometry(reference)[0]
    if tuple(shape) != tuple(ref_shape):
        raise SegkitError(f"inconsistent sizes: {_fmt_size(shape)} but the case's image {reference.name} is "
                          f"{_fmt_size(ref_shape)}", path)


def load_plain_image(path: Path, spacing: list[float] | None, component: int | None, n_components: int,
                     reference: Path | None) -> tuple[np.ndarray, Geometry]:
    """One channel of a PNG/TIFF/JPEG image: the grey values, or colour ``component`` of an RGB file."""
    array, geometry, k = _read_plain(path, spacing)
    if k != n_components:
        if k > 1:
            raise SegkitError(f"is a colour image ({k} components per pixel); declare one channel name per "
                              f"component (e.g. channel_names: [R, G, B]) to use the colours as channels", path)
        raise SegkitError(f"is a grey image but channel_names declares {n_components} colour channels", path)
    if k > 1:
        array = np.ascontiguousarray(array[..., component])
    _check_size(path, array.shape, reference)
    return array, geometry


def load_label(path: Path, spacing: list[float] | None, table: dict[Any, Any] | None,
               reference: Path | None) -> tuple[np.ndarray, Geometry]:
    """A label file (any readable format), its values mapped through ``table`` when one is given."""
    if path.name.lower().endswith(LOSSY_ENDINGS):
        raise SegkitError("JPEG is lossy and cannot hold a label map; labels must be PNG, TIFF or NIfTI/MHA/NRRD",
                          path)
    if is_plain(path):
        array, geometry, k = _read_plain(path, spacing)
        if k != 1:
            raise SegkitError(f"label image has {k} components per pixel (colour); store labels as one grey "
                              f"value per pixel", path)
    else:
        array, geometry = read_image(path)
    _check_size(path, array.shape, reference)
    return (map_values(array, table, path) if table else array), geometry


def map_values(array: np.ndarray, table: dict[Any, Any], path: Path) -> np.ndarray:
    """Replace every source value by its label value; a value missing from the table is an error."""
    mapping = {float(k): int(v) for k, v in table.items()}
    present = [float(v) for v in np.unique(array)]
    unmapped = [v for v in present if v not in mapping]
    if unmapped:
        shown = ", ".join(f"{v:g}" for v in unmapped[:5])
        raise SegkitError(f"label holds value(s) {shown} missing from label_values "
                          f"{ {int(k) if float(k).is_integer() else k: v for k, v in mapping.items()} }", path)
    out = np.zeros(array.shape, np.uint8 if max(mapping.values(), default=0) < 256 else np.int16)
    for source in present:
        out[array == source] = mapping[source]
    return out


def merge_structures(masks: dict[str, Path], values: dict[str, int], priority: list[str], reference: Path,
                     spacing: list[float] | None, case_id: str) -> tuple[np.ndarray, Geometry]:
    """One label map from one binary mask per structure, on the grid of ``reference`` (the case's image).

    Where structures of different values overlap, the one listed first in ``priority`` wins (a listed
    structure beats an unlisted one); an overlap of two unlisted structures is an error naming both.
    """
    if is_plain(reference):
        shape, _ = plain_size(reference)
        geometry = plain_geometry(reference, spacing, len(shape))
    else:
        shape, geometry = read_geometry(reference)
    names = list(masks)
    rank = np.array([priority.index(n) if n in priority else len(priority) for n in names])  # lower wins
    label = np.zeros(shape, np.uint8 if max(values.values(), default=0) < 256 else np.int16)
    owner = np.full(shape, -1, np.int16 if len(names) < 2**15 else np.int32)  # structure per voxel; -1 none
    for index, name in enumerate(names):
        inside = _read_mask(masks[name], shape, geometry, spacing)
        claimed = inside & (owner >= 0)
        if claimed.any():
            _check_overlap(names, index, np.unique(owner[claimed]), values, priority, case_id, masks[name])
            inside[claimed] = rank[owner[claimed]] > rank[index]  # a voxel changes hands only to a stronger one
        label[inside] = values[name]
        owner[inside] = index
    return label, geometry


def _check_overlap(names: list[str], index: int, others: np.ndarray, values: dict[str, int],
                   priority: list[str], case_id: str, path: Path) -> None:
    name = names[index]
    for other in (names[int(o)] for o in others):
        if values[other] != values[name] and name not in priority and other not in priority:
            raise SegkitError(f"structures {other!r} and {name!r} overlap in case {case_id!r}; list the one that "
                              f"wins in structure_priority", path)


def _read_mask(path: Path, shape: tuple[int, ...], geometry: Geometry, spacing: list[float] | None) -> np.ndarray:
    """A structure mask as booleans, after checking it lies on the image grid and is binary."""
    if is_plain(path):
        array, mask_geometry, k = _read_plain(path, spacing)
        if k != 1:
            raise SegkitError(f"structure mask has {k} components per pixel; expected one grey value", path)
    else:
        array, mask_geometry = read_image(path)
    if tuple(array.shape) != tuple(shape):
        raise SegkitError(f"structure mask is not on the image grid: size {_fmt_size(array.shape)} vs "
                          f"{_fmt_size(shape)} (masks are never resampled)", path)
    diff = mask_geometry.differs_from(geometry)
    if diff:
        raise SegkitError(f"structure mask is not on the image grid: {diff} (masks are never resampled)", path)
    foreground = np.unique(array[array != 0])
    if foreground.size > 1:
        shown = ", ".join(f"{v:g}" for v in foreground[:5].astype(float))
        raise SegkitError(f"structure mask holds several foreground values ({shown}); expected 0 and one value",
                          path)
    return array != 0
