"""Segmentation metrics per class: overlap (Dice, IoU, TP/FP/FN), volumes and surface distances.

Conventions (the same as nnU-Net v2's ``evaluate_predictions`` for the overlap part):

* A class is evaluated as the binary mask ``seg == label``; a region (a tuple of label values, nnU-Net
  v2's region labels) as the mask "label is one of the region's values", as nnU-Net's
  ``region_or_label_to_mask``. Voxels where the reference holds the dataset's ``ignore`` label are
  excluded from every metric. Results are keyed by :func:`toolkit.dataset.labels.target_key`
  (``"2"``, ``"(1, 2, 3)"``).
* **Empty-both rule**: when neither prediction nor reference contains the class, Dice, IoU, HD95 and
  NSD are ``None`` and the case does not count towards that class' mean (it is neither perfect nor a
  failure, it is uninformative). Counts and volumes are 0 and do count.
* **One side empty**: Dice = IoU = NSD = 0 and HD95 = the length of the image diagonal in mm, the
  largest distance two voxels of that image can have. A finite worst-case penalty rather than ``inf``
  keeps means meaningful and the JSON standard (``Infinity`` is not JSON).
* Surfaces are the mask voxels with at least one face neighbour outside the mask (voxels on the
  image border count as surface). Distances run between voxel centres in mm, computed with an
  exact Euclidean distance transform on the physical ``spacing``, so anisotropic images are handled
  correctly. HD95 is the larger of the two directed 95th percentiles; NSD (normalized surface Dice)
  is the fraction of both surfaces' voxels lying within ``tolerance_mm`` of the other surface.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from toolkit.dataset.labels import target_key, target_values

Target = int | Sequence[int]

METRIC_KEYS = ("Dice", "IoU", "TP", "FP", "FN", "n_pred", "n_ref", "volume_pred_mm3", "volume_ref_mm3",
               "HD95", "NSD")
SURFACE_KEYS = ("HD95", "NSD")


def dice_from_counts(tp: int, fp: int, fn: int) -> float | None:
    """2TP / (2TP + FP + FN); ``None`` when prediction and reference are both empty."""
    denom = 2 * tp + fp + fn
    return None if denom == 0 else 2.0 * tp / denom


def iou_from_counts(tp: int, fp: int, fn: int) -> float | None:
    """TP / (TP + FP + FN); ``None`` when both are empty."""
    denom = tp + fp + fn
    return None if denom == 0 else tp / denom


def confusion(pred_mask: np.ndarray, ref_mask: np.ndarray) -> tuple[int, int, int]:
    """(TP, FP, FN) voxel counts of two boolean masks of the same shape."""
    tp = int(np.count_nonzero(pred_mask & ref_mask))
    n_pred = int(np.count_nonzero(pred_mask))
    n_ref = int(np.count_nonzero(ref_mask))
    return tp, n_pred - tp, n_ref - tp


def target_masks(pred: np.ndarray, ref: np.ndarray, target: Target, valid: np.ndarray | None
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Boolean (prediction, reference) masks of a label or region, ignored voxels removed."""
    values = target_values(target)
    if len(values) == 1:
        p, r = pred == values[0], ref == values[0]
    else:
        p, r = np.isin(pred, values), np.isin(ref, values)
    if valid is not None:
        p &= valid
        r &= valid
    return p, r


def dice_per_class(pred: np.ndarray, ref: np.ndarray, labels: Sequence[Target],
                   ignore_label: int | None = None) -> dict:
    """Dice of every label value or region in ``labels``, keyed as given (``None`` where both are empty)."""
    _check_shapes(pred, ref)
    valid = ref != ignore_label if ignore_label is not None else None
    out: dict = {}
    for label in labels:
        key = int(label) if isinstance(label, int | np.integer) else tuple(int(v) for v in label)
        out[key] = dice_from_counts(*confusion(*target_masks(pred, ref, label, valid)))
    return out


def surface(mask: np.ndarray) -> np.ndarray:
    """Voxels of ``mask`` that touch the outside through a face (or lie on the image border)."""
    structure = ndimage.generate_binary_structure(mask.ndim, 1)
    return mask & ~ndimage.binary_erosion(mask, structure=structure, border_value=0)


def _crop_to_union(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Crop both masks to their joint bounding box plus one voxel.

    Exact for surface distances: every surface voxel lies inside, and the one-voxel margin (or the
    image border, where the box touches it) makes the erosion behave as on the full image.
    """
    coords = np.nonzero(a | b)
    box = tuple(slice(max(int(c.min()) - 1, 0), int(c.max()) + 2) for c in coords)
    return a[box], b[box]


def surface_distances(pred_mask: np.ndarray, ref_mask: np.ndarray,
                      spacing: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Directed surface distances in mm: (pred surface -> ref surface, ref surface -> pred surface).

    Both masks must be non-empty. ``spacing`` is in array order (z, y, x).
    """
    a, b = _crop_to_union(pred_mask, ref_mask)
    sa, sb = surface(a), surface(b)
    sampling = [float(s) for s in spacing]
    d_to_b = ndimage.distance_transform_edt(~sb, sampling=sampling)
    d_to_a = ndimage.distance_transform_edt(~sa, sampling=sampling)
    return d_to_b[sa], d_to_a[sb]


def hd95_from_distances(d_pred_ref: np.ndarray, d_ref_pred: np.ndarray) -> float:
    """Symmetric 95th-percentile Hausdorff distance: max of the two directed 95th percentiles."""
    return float(max(np.percentile(d_pred_ref, 95), np.percentile(d_ref_pred, 95)))


def nsd_from_distances(d_pred_ref: np.ndarray, d_ref_pred: np.ndarray, tolerance_mm: float) -> float:
    """Normalized surface Dice: share of both surfaces within ``tolerance_mm`` of the other one."""
    close = np.count_nonzero(d_pred_ref <= tolerance_mm) + np.count_nonzero(d_ref_pred <= tolerance_mm)
    return float(close / (d_pred_ref.size + d_ref_pred.size))


def image_diagonal_mm(shape: Sequence[int], spacing: Sequence[float]) -> float:
    """Distance between the centres of two opposite corner voxels: the worst possible HD95."""
    return float(math.sqrt(sum(((n - 1) * s) ** 2 for n, s in zip(shape, spacing, strict=True))))


def class_metrics(pred_mask: np.ndarray, ref_mask: np.ndarray, spacing: Sequence[float],
                  tolerance_mm: float = 1.0, surface_metrics: bool = True) -> dict[str, float | int | None]:
    """Every metric of one class in one case (see the module docstring for empty-mask conventions)."""
    tp, fp, fn = confusion(pred_mask, ref_mask)
    voxel_mm3 = float(np.prod([float(s) for s in spacing]))
    n_pred, n_ref = tp + fp, tp + fn
    out: dict[str, float | int | None] = {
        "Dice": dice_from_counts(tp, fp, fn), "IoU": iou_from_counts(tp, fp, fn),
        "TP": tp, "FP": fp, "FN": fn, "n_pred": n_pred, "n_ref": n_ref,
        "volume_pred_mm3": n_pred * voxel_mm3, "volume_ref_mm3": n_ref * voxel_mm3,
    }
    if not surface_metrics:
        return out
    if n_pred == 0 and n_ref == 0:
        out["HD95"], out["NSD"] = None, None
    elif n_pred == 0 or n_ref == 0:
        out["HD95"], out["NSD"] = image_diagonal_mm(ref_mask.shape, spacing), 0.0
    else:
        d_pr, d_rp = surface_distances(pred_mask, ref_mask, spacing)
        out["HD95"] = hd95_from_distances(d_pr, d_rp)
        out["NSD"] = nsd_from_distances(d_pr, d_rp, tolerance_mm)
    return out


def case_metrics(pred: np.ndarray, ref: np.ndarray, labels: Sequence[Target], spacing: Sequence[float],
                 tolerance_mm: float = 1.0, ignore_label: int | None = None,
                 surface_metrics: bool = True) -> dict[str, dict[str, float | int | None]]:
    """Metrics of every label or region in one case, keyed by :func:`target_key` (JSON keys)."""
    _check_shapes(pred, ref)
    if len(spacing) != ref.ndim:
        raise ValueError(f"spacing {tuple(spacing)} does not match a {ref.ndim}D image")
    valid = ref != ignore_label if ignore_label is not None else None
    out = {}
    for label in labels:
        p, r = target_masks(pred, ref, label, valid)
        out[target_key(label)] = class_metrics(p, r, spacing, tolerance_mm, surface_metrics)
    return out


def _check_shapes(pred: np.ndarray, ref: np.ndarray) -> None:
    if pred.shape != ref.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from reference shape {ref.shape}")
