"""Crop a case to the bounding box of its non-zero region (docs/method.md 1.1).

The mask is the union over channels of ``!= 0`` with holes filled, so dark structures inside the body
(air in the lungs, CSF) are never cut away. The bounding box is remembered so that predictions can
be pasted back into the uncropped volume at export.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

BBox = list[list[int]]  # per spatial axis [start, stop)


def nonzero_mask(data: np.ndarray) -> np.ndarray:
    """Union over channels of ``data != 0`` (``data`` is (c, *spatial)), holes filled."""
    mask = np.any(data != 0, axis=0)
    return ndimage.binary_fill_holes(mask)


def bbox_of(mask: np.ndarray) -> BBox:
    """Bounding box [start, stop) per axis of a boolean mask; the full extent if the mask is empty."""
    if not mask.any():
        return [[0, int(s)] for s in mask.shape]
    box = []
    for axis in range(mask.ndim):
        other = tuple(a for a in range(mask.ndim) if a != axis)
        hit = np.flatnonzero(mask.any(axis=other))
        box.append([int(hit[0]), int(hit[-1]) + 1])
    return box


def crop_to_bbox(array: np.ndarray, bbox: BBox) -> np.ndarray:
    """Crop the trailing spatial axes of ``array`` (leading channel axes are kept)."""
    lead = array.ndim - len(bbox)
    return array[(slice(None),) * lead + tuple(slice(a, b) for a, b in bbox)]


def crop_to_nonzero(
    data: np.ndarray, seg: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray | None, BBox, np.ndarray]:
    """Crop image ``data`` (c, *spatial) and optional ``seg`` (same spatial shape) to the non-zero box.

    Returns (cropped data, cropped seg, bbox, cropped non-zero mask). The mask is what z-score
    normalisation uses when the plan says ``use_mask_for_norm``.
    """
    mask = nonzero_mask(data)
    bbox = bbox_of(mask)
    cropped_seg = crop_to_bbox(seg, bbox) if seg is not None else None
    return crop_to_bbox(data, bbox), cropped_seg, bbox, crop_to_bbox(mask, bbox)


def paste_into(cropped: np.ndarray, bbox: BBox, full_shape: tuple[int, ...], fill=0) -> np.ndarray:
    """Inverse of :func:`crop_to_bbox` for the spatial axes: place ``cropped`` into a filled volume."""
    lead = cropped.shape[: cropped.ndim - len(bbox)]
    out = np.full(lead + tuple(full_shape), fill, dtype=cropped.dtype)
    out[(slice(None),) * len(lead) + tuple(slice(a, b) for a, b in bbox)] = cropped
    return out
