"""Rotation + scaling + centre crop in one resampling (docs/method.md 1.2, step 1).

Geometry (batchgenerators v1's ``augment_spatial``, which the previous loader used, kept exactly):
an output voxel ``i`` of the final patch ``P`` samples the drawn (larger) sample ``S`` at
``A @ (i - (P - 1) / 2) + (S - 1) / 2`` in voxel indices, with ``A = scale * R.T`` and
``R = Rx @ Ry @ Rz`` (3D) or the in-plane rotation (2D). Without rotation and scaling the transform
is a plain centre crop at ``(S - P) // 2`` and nothing is resampled (the loader then reads only that
window from disk, see :func:`crop_window`).

Interpolation: images are sampled linearly (``torch.nn.functional.grid_sample``, trilinear/bilinear,
zeros outside). The paper (docs/method.md 5) is silent on the order; the reference implementation, nnU-Net v2
(batchgeneratorsv2 ``SpatialTransform``, mode_image='bilinear'), also samples images linearly during
augmentation (batchgenerators v1's cubic splines plus prefilter were the old loader's main cost).
Labels are resampled as both v1 (order 1) and v2 (mode_seg='bilinear') do: each label's indicator
linearly, then the arg-max over labels; ties (a sample point exactly between two labels) go to the
lower label, as nnU-Net's ``resample_torch`` 'lowest'. Label 0 (background, and what the sampler
pads with; -1 instead where the sampler pads with -1, see ``pad_label``) is not resampled: its score is 1 minus the others', which inside the sample equals its
interpolated indicator (same labels as v1 there, checked voxel for voxel) and past the edge adds the
zero padding's weight, so a point up to half a voxel past the edge keeps the edge voxel's label and
beyond that becomes 0 (v1 gave 0 to every point past the outermost voxel centre). Nearest-neighbour
labels would be faster but make label boundaries jagged under scaling and misalign them with the
linearly sampled image by up to half a voxel, so they are not used. Image and indicators share one
grid_sample call. The "dummy 2D" mode resamples every z slice in-plane.
"""

from __future__ import annotations

import numpy as np


def rotation_matrix(angles: tuple[float, ...]) -> np.ndarray:
    """``Rx @ Ry @ Rz`` for three angles (radians), the 2D rotation for one."""
    if len(angles) == 1:
        c, s = np.cos(angles[0]), np.sin(angles[0])
        return np.array([[c, -s], [s, c]])
    (cx, cy, cz), (sx, sy, sz) = np.cos(angles), np.sin(angles)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rx @ ry @ rz


def draw_scale(rng: np.random.Generator, low: float, high: float) -> float:
    """Half the draws below 1, half above (batchgenerators v1's rule for scale, contrast and gamma)."""
    if rng.uniform() < 0.5 and low < 1:
        return float(rng.uniform(low, 1))
    return float(rng.uniform(max(low, 1), high))


def draw_matrix(rng: np.random.Generator, num_angles: int, max_angle: float, p_rotation: float, p_scale: float,
                scale_range: tuple[float, float]) -> np.ndarray | None:
    """The sampling matrix ``A`` (scale * R.T), or None when neither rotation nor scaling is drawn.
    ``num_angles``: 3 rotates about every axis of a 3D patch, 1 rotates in-plane."""
    do_rotation = rng.uniform() < p_rotation
    do_scale = rng.uniform() < p_scale
    if not (do_rotation or do_scale):
        return None
    angles = rng.uniform(-max_angle, max_angle, num_angles) if do_rotation else np.zeros(num_angles)
    scale = draw_scale(rng, *scale_range) if do_scale else 1.0
    return scale * rotation_matrix(tuple(angles)).T


def crop_window(sample: tuple[int, ...], patch: tuple[int, ...]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(offset, size) of the centre crop of ``patch`` from ``sample`` (the un-resampled case)."""
    return tuple((s - p) // 2 for s, p in zip(sample, patch, strict=True)), tuple(patch)


def sampling_grid(matrix: np.ndarray, sample: tuple[int, ...], patch: tuple[int, ...]):
    """grid_sample grid (1, *patch, d), align_corners=True, xyz order, that maps the final patch
    into the sample: voxel offset ``o`` from the patch centre samples the normalised input coordinate
    ``matrix @ o / ((S - 1) / 2)``. Built by broadcasting (torch's affine_grid and small matmuls
    stall for tens of milliseconds when the cores are oversubscribed)."""
    import torch

    ndim = len(patch)
    to_input = (2.0 / np.maximum(np.asarray(sample, dtype=float) - 1, 1))[:, None] * matrix
    offsets = [(np.arange(p, dtype=np.float32) - (p - 1) / 2).reshape([-1 if a == j else 1 for a in range(ndim)])
               for j, p in enumerate(patch)]
    coords = [sum(np.float32(to_input[k, j]) * offsets[j] for j in range(ndim)) for k in reversed(range(ndim))]
    return torch.from_numpy(np.stack(np.broadcast_arrays(*coords), axis=-1)[None])


def _resample(values: np.ndarray, grid, ndim: int) -> np.ndarray:
    """Linear resampling of (..., *spatial) float32 values: leading axes are channels."""
    import torch
    from torch.nn.functional import grid_sample

    lead = values.shape[: values.ndim - ndim]
    x = torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32)).reshape(1, -1, *values.shape[-ndim:])
    out = grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    return out.reshape(*lead, *out.shape[2:]).numpy()


def _present_labels(seg: np.ndarray, implied: int) -> np.ndarray:
    """The labels in ``seg`` other than ``implied`` (whose indicator is implied, see below)."""
    labels = np.flatnonzero(np.bincount(seg.ravel())) if seg.min() >= 0 else np.unique(seg)
    return labels[labels != implied]


def _labels_from_scores(labels: np.ndarray, scores: np.ndarray, dtype: np.dtype, implied: int) -> np.ndarray:
    """Arg-max over the resampled indicators (K, ...) of the labels other than ``implied``, which
    scores the rest: 1 - their sum, i.e. its own indicator plus the zero padding's weight.
    ``implied`` is the lowest label (0, or the -1 of the outside-mask region), so it wins ties."""
    if len(labels) == 0:
        return np.full(scores.shape[1:], implied, dtype)
    best = scores.argmax(0)
    implied_wins = 1.0 - scores.sum(0) >= np.take_along_axis(scores, best[None], 0)[0]
    return np.where(implied_wins, implied, labels[best]).astype(dtype)


def spatial_transform(data: np.ndarray, seg: np.ndarray, matrix: np.ndarray | None,
                      patch: tuple[int, ...], pad_label: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Resample ``data`` (c, *sample) and ``seg`` (k, *sample) to ``patch`` (the trailing
    ``len(patch)`` axes; a leading z axis beyond them is resampled slice by slice: dummy 2D).
    Each seg channel (the label, the cascade's previous stage) keeps its own label set. Image and
    label indicators go through one grid_sample call (the interpolation weights are shared).
    ``pad_label``: what the label channel (seg[0]) gets past the sample's edge (the sampler's padding
    value: -1, "outside the non-zero mask", when the plan normalises inside that mask)."""
    ndim = len(patch)
    sample = data.shape[-ndim:]
    if matrix is None:
        offset, size = crop_window(tuple(sample), tuple(patch))
        box = (Ellipsis, *[slice(o, o + s) for o, s in zip(offset, size, strict=True)])
        return np.ascontiguousarray(data[box]), np.ascontiguousarray(seg[box])
    implied = [pad_label if c == 0 else 0 for c in range(seg.shape[0])]
    label_sets = [_present_labels(seg[c], implied[c]) for c in range(seg.shape[0])]
    stacked = np.empty((data.shape[0] + sum(map(len, label_sets)), *data.shape[1:]), np.float32)
    stacked[: data.shape[0]] = data
    start = data.shape[0]
    for c, labels in enumerate(label_sets):
        for k, label in enumerate(labels):
            np.equal(seg[c], label, out=stacked[start + k], casting="unsafe")
        start += len(labels)
    out = _resample(stacked, sampling_grid(matrix, tuple(sample), tuple(patch)), ndim)
    start, out_seg = data.shape[0], []
    for labels, imp in zip(label_sets, implied, strict=True):
        out_seg.append(_labels_from_scores(labels, out[start: start + len(labels)], seg.dtype, imp))
        start += len(labels)
    return out[: data.shape[0]], np.stack(out_seg)
