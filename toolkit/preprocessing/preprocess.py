"""One case from raw files to training-ready arrays: crop, normalise, resample, sample foreground.

Order of operations (as nnU-Net): transpose the axes into working order (``transpose_forward``:
the coarsest axis first, toolkit/planning/axes.py) -> crop to the non-zero box -> normalise (the
mask still fits the image voxel for voxel) -> resample image (cubic) and label (one-hot linear +
argmax) to the plan's spacing with the separate-z rule -> sample up to 10,000 voxel locations per
foreground label (per foreground region for region labels, plus the annotated voxels when there is
an ignore label: :func:`location_targets`). The properties returned are everything export needs to go back to the raw grid
(docs/interfaces.md "Preprocessed cases"): every per-axis property is in working order (the stored
arrays' order), ``transpose_forward`` records the permutation and ``geometry`` is the input's own.

Choices written down here because the spec is silent:
- The plan's lists are stored in the input's (z, y, x) order and read in working order through
  :func:`plan_entry`.
- 2D input images (y, x) get a singleton z axis with spacing 999 (nnU-Net's convention); their
  geometry stays 2D and export drops the axis again.
- 2d configuration: the plan's spacing has 2 entries (in-plane); z keeps its own spacing.
- Label values not listed in the plan's labels (regions' members and the ignore value included) are an
  input error, not silently kept. The stored label map keeps the raw values (ignore included).
- When the plan normalises some channel inside the non-zero mask (``use_mask_for_norm``), label-0
  voxels outside that mask are stored as -1 (``OUTSIDE_MASK``; nnU-Net marks them so, always), so
  that training can set those channels back to 0 there after augmentation (training/augment.py).
  The loader turns -1 into background; class locations and exported labels never contain it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from toolkit.dataset.labels import LabelSpec, label_spec
from toolkit.errors import SegkitError
from toolkit.io.images import read_case_images, read_image
from toolkit.planning.axes import array_to_working, plans_transpose, working_entry
from toolkit.preprocessing.cropping import crop_to_nonzero
from toolkit.preprocessing.normalization import normalize
from toolkit.preprocessing.resampling import (
    compute_new_shape,
    resample_image,
    resample_segmentation,
    separate_z_axis,
)

MAX_LOCATIONS = 10_000
SPACING_2D_IMAGES = 999.0
OUTSIDE_MASK = -1  # seg value of background voxels outside the non-zero mask (use_mask_for_norm plans)


def plan_entry(plans: dict, config: str) -> dict:
    """The plan of ``config`` in working order, or a one-line error naming the configurations that exist."""
    configs = plans.get("configurations", {})
    if config not in configs:
        raise SegkitError(f"configuration {config!r} not in plans (available: {', '.join(configs) or 'none'})")
    return working_entry(plans, config)


def target_spacing(plans: dict, config: str, spacing: tuple[float, ...]) -> list[float]:
    """Spacing (z, y, x) a case is resampled to: the plan's, with z kept for 2d (2-entry) plans."""
    planned = [float(s) for s in plan_entry(plans, config)["spacing"]]
    if len(planned) == len(spacing) - 1:
        return [float(spacing[0]), *planned]
    if len(planned) != len(spacing):
        raise SegkitError(f"plan spacing {planned} does not fit a {len(spacing)}D case")
    return planned


def _read_case(image_paths: list[Path], label_path: Path | None):
    data, geometry = read_case_images([Path(p) for p in image_paths])
    seg = None
    if label_path is not None:
        seg, label_geo = read_image(label_path)
        if seg.shape != data.shape[1:]:
            raise SegkitError(f"label shape {seg.shape} differs from image shape {data.shape[1:]}", label_path)
        diff = label_geo.differs_from(geometry)
        if diff:
            raise SegkitError(f"label geometry differs from the image: {diff}", label_path)
        if not np.issubdtype(seg.dtype, np.integer):
            rounded = np.rint(seg)
            if not np.array_equal(rounded, seg):
                raise SegkitError("label has non-integer values", label_path)
            seg = rounded
        seg = seg.astype(np.int16)[None]
    spacing = geometry.spacing
    if data.ndim == 3:  # 2D image: singleton z
        data, seg = data[:, None], (seg[:, None] if seg is not None else None)
        spacing = (SPACING_2D_IMAGES, *spacing)
    return data, seg, geometry, tuple(float(s) for s in spacing)


def location_targets(spec: LabelSpec) -> list[tuple[str, tuple[int, ...]]]:
    """(``class_locations`` key, label values) of what foreground sampling draws from, as nnU-Net v2's
    preprocessor collects them: each foreground label, or each foreground region (key "1,2,3": the
    union of its values, so oversampling covers the union of the regions); with an ignore label also
    every annotated voxel (key "-1,0,1,...": outside-mask, background and every label, nnU-Net's
    ``annotated_classes_key``), which random patches are centred on. Ignore voxels are in none."""
    targets = [(",".join(str(v) for v in values), values) for values in spec.regions]
    if spec.has_ignore:
        annotated = (OUTSIDE_MASK, *spec.all_labels)
        targets.append((",".join(str(v) for v in annotated), annotated))
    return targets


def sample_class_locations(seg: np.ndarray, labels: list[int] | list[tuple[str, tuple[int, ...]]],
                           seed: int) -> dict[str, list[list[int]]]:
    """Up to ``MAX_LOCATIONS`` voxel coordinates (z, y, x) per foreground label (or per
    :func:`location_targets` entry), seeded.

    Works on flat indices (8 bytes per voxel) rather than ``argwhere`` (24) for large classes.
    """
    rng = np.random.default_rng(seed)
    flat = seg.reshape(-1)
    spatial = seg.shape[-3:]
    out: dict[str, list[list[int]]] = {}
    keyed = [(str(t), (int(t),)) if not isinstance(t, tuple) else t for t in labels]
    for key, values in keyed:
        idx = np.flatnonzero(flat == values[0] if len(values) == 1 else np.isin(flat, values))
        if len(idx) > MAX_LOCATIONS:
            idx = np.sort(rng.choice(idx, MAX_LOCATIONS, replace=False))
        coords = np.stack(np.unravel_index(idx, spatial), axis=1) if len(idx) else np.zeros((0, 3), int)
        out[key] = coords.astype(int).tolist()
    return out


def plans_label_spec(plans: dict) -> LabelSpec:
    """The label model of the plans' ``labels`` (regions need no ``regions_class_order`` here)."""
    labels = plans.get("labels", {"background": 0})
    if not isinstance(labels, dict):
        raise SegkitError("the plans' 'labels' is not an object; re-run `segkit plan`")
    return label_spec(labels, plans.get("regions_class_order"), require_order=False)


def _check_labels(seg: np.ndarray, spec: LabelSpec, label_path: Path | None) -> None:
    allowed = set(spec.all_labels) | ({spec.ignore} if spec.has_ignore else set())
    present = {int(v) for v in np.unique(seg)}
    unknown = sorted(present - allowed)
    if unknown:
        raise SegkitError(f"label values {unknown} are not in the plan's labels {sorted(allowed)}", label_path)


def preprocess_case(
    image_paths: list[Path], label_path: Path | None, plans: dict, config: str, seed: int = 0
) -> tuple[np.ndarray, np.ndarray | None, dict]:
    """Raw channel files (+ optional label) -> (data float32 (c, *working axes), seg int16 (1, ...) or None,
    properties); working axes = the input's (z, y, x) permuted by the plans' ``transpose_forward``."""
    forward, _ = plans_transpose(plans)
    entry = plan_entry(plans, config)
    data, seg, geometry, spacing = _read_case(image_paths, label_path)
    data = array_to_working(data, forward)
    seg = array_to_working(seg, forward) if seg is not None else None
    spacing = tuple(spacing[a] for a in forward)
    spec = plans_label_spec(plans)
    shape_before = data.shape[1:]
    data, seg, bbox, mask = crop_to_nonzero(data, seg)
    if seg is not None:
        _check_labels(seg, spec, label_path)
        if any(entry["use_mask_for_norm"]):
            seg = np.where((seg == 0) & ~mask[None], np.int16(OUTSIDE_MASK), seg)
    data = np.ascontiguousarray(data, dtype=np.float32)
    shape_after_crop = data.shape[1:]
    normalize(data, entry["normalization"], entry["use_mask_for_norm"], mask,
              plans.get("foreground_intensity_properties_per_channel"))
    del mask
    new_spacing = target_spacing(plans, config, spacing)
    new_shape = compute_new_shape(shape_after_crop, spacing, new_spacing)
    threshold = float(plans.get("anisotropy_threshold", 3))
    data = resample_image(data, spacing, new_spacing, new_shape, order=3, threshold=threshold)
    properties = {
        "geometry": geometry.to_json(),
        "transpose_forward": list(forward),
        "shape_before_crop": list(shape_before),
        "bbox": [list(b) for b in bbox],
        "shape_after_crop": list(shape_after_crop),
        "spacing": list(spacing),
        "target_spacing": new_spacing,
        "shape_after_resampling": list(new_shape),
        "separate_z_axis": separate_z_axis(spacing, new_spacing, threshold),
        "config": config,
    }
    if seg is not None:
        seg = resample_segmentation(seg[0], new_shape, spacing, new_spacing, threshold)[None]
        properties["class_locations"] = sample_class_locations(seg[0], location_targets(spec), seed)
    return data, seg, properties
