"""Small synthetic datasets and hand-made plans for the preprocessing and export tests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from toolkit.io.images import Geometry, write_image

LABELS = {"background": 0, "organ": 1, "lesion": 2}
# An oblique direction and an odd origin, so any geometry slip shows up.
_C, _S = np.cos(0.3), np.sin(0.3)
DIRECTION = (_C, -_S, 0.0, _S, _C, 0.0, 0.0, 0.0, 1.0)


def make_plans(spacing, norm=("zscore",), mask=(False,), labels=None, spacing_2d=None, fg_props=None) -> dict:
    """A plans dict with only the keys preprocessing and export read."""
    n = len(norm)
    configs = {"3d_fullres": {"spacing": list(spacing), "normalization": list(norm),
                              "use_mask_for_norm": list(mask), "data_identifier": "3d_fullres"}}
    if spacing_2d is not None:
        configs["2d"] = {**configs["3d_fullres"], "spacing": list(spacing_2d), "data_identifier": "2d"}
    configs["3d_cascade_fullres"] = {**configs["3d_fullres"], "previous_stage": "3d_lowres"}
    props = fg_props or {str(c): {"mean": 0.0, "std": 1.0, "percentile_00_5": -5.0, "percentile_99_5": 5.0}
                         for c in range(n)}
    return {"labels": dict(labels or LABELS), "anisotropy_threshold": 3, "transpose_forward": [0, 1, 2],
            "foreground_intensity_properties_per_channel": props, "configurations": configs}


def _ellipsoid(shape, center, radii_mm, spacing):
    grids = np.meshgrid(*[(np.arange(n) - c) * s for n, c, s in zip(shape, center, spacing, strict=True)], indexing="ij")
    return sum((g / r) ** 2 for g, r in zip(grids, radii_mm, strict=True)) <= 1.0


def synthetic_case(shape, spacing, rng, channels: int = 1):
    """(image (c, z, y, x) float32 with a zero border, label (z, y, x) uint8 with labels 1 and 2)."""
    center = np.array(shape) / 2 + rng.uniform(-1, 1, 3)
    extent = np.array(shape) * np.array(spacing)
    body = _ellipsoid(shape, center, extent * 0.42, spacing)
    organ = _ellipsoid(shape, center, extent * 0.3, spacing) & body
    lesion = _ellipsoid(shape, center + 1, extent * 0.16, spacing) & organ
    label = organ.astype(np.uint8) + lesion.astype(np.uint8)
    image = np.zeros((channels, *shape), np.float32)
    for c in range(channels):
        image[c] = body * (100 + 50 * c) + organ * 40 - lesion * 30
        image[c] += body * rng.normal(0, 5, shape)
    return image, label


def write_dataset(root: Path, n: int, shape, spacing, channels: int = 1, seed: int = 0) -> Path:
    """A canonical (nnU-Net v2 layout) dataset of ``n`` synthetic cases with an oblique geometry."""
    rng = np.random.default_rng(seed)
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    geometry = Geometry(tuple(reversed([float(s) for s in spacing])), (12.5, -40.25, 7.0), DIRECTION)
    for i in range(n):
        image, label = synthetic_case(shape, spacing, rng, channels)
        for c in range(channels):
            write_image(image[c], geometry, root / "imagesTr" / f"case{i:03d}_{c:04d}.nii.gz")
        write_image(label, geometry, root / "labelsTr" / f"case{i:03d}.nii.gz")
    meta = {"channel_names": {str(c): f"MR{c}" for c in range(channels)}, "labels": LABELS,
            "numTraining": n, "file_ending": ".nii.gz", "name": "Synthetic"}
    (root / "dataset.json").write_text(json.dumps(meta))
    return root


def dice(a: np.ndarray, b: np.ndarray, value: int) -> float:
    x, y = a == value, b == value
    return 2.0 * (x & y).sum() / max(x.sum() + y.sum(), 1)
