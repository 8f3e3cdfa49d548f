"""Cascade full-resolution stage: the previous stage's segmentation as extra input channels.

The low-res stage saves each validation case's probabilities (``toolkit.inference.cascade``:
``models/3d_lowres/fold_k/validation/next_stage/<case>.npz``; every training case is a validation
case of one low-res fold). Before training, :func:`materialize_previous_stage` turns them into
``<WORK>/<dataset>/predicted_next_stage/<previous config>/<case>.npy``: (1, z, y, x) int8 channel
indices in the 3d_fullres preprocessed grid (upsampled with the same function prediction uses),
memory-mapped by the loader like the image (a compressed .npz would be decompressed whole for every
patch). The loader crops it with the same box as the image, and the augmentation moves it with the
label through the spatial transform and mirroring. Afterwards it becomes a one-hot block of
``num_classes`` channels (background included, docs/interfaces.md "Network") appended to the image channels,
and is corrupted as docs/method.md 1.2 prescribes so the full-res stage learns to correct the low-res one
(probabilities and ranges: ``AugmentationSettings``, defaults below):
- with p 0.4 per sample, each foreground channel (random order) gets a binary operator (dilation,
  erosion, opening or closing) with a ball of radius U(1, 8) voxels; voxels a channel gains are
  taken away from the other channels;
- with p 0.2 per sample, in each foreground channel one random connected component smaller than
  15% of the patch is removed;
the background channel is then recomputed as "no foreground". Balls are Euclidean, implemented with
distance transforms (same result as a ball structuring element, O(voxels) instead of O(voxels x
ball)).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy import ndimage

from toolkit.errors import SegkitError
from toolkit.io.atomic import atomic_write_path
from toolkit.training.augment_settings import AugmentationSettings


def previous_stage_folder(work_root: Path, previous_config: str) -> Path:
    """``<WORK>/<dataset>/predicted_next_stage/<previous config>/``."""
    return Path(work_root) / "predicted_next_stage" / previous_config


def load_previous_stage(folder: Path, case_id: str) -> np.ndarray:
    """The previous stage's segmentation of one case, (1, z, y, x) int8 channel indices, memory-mapped."""
    path = Path(folder) / f"{case_id}.npy"
    if not path.is_file():
        raise SegkitError("previous-stage prediction missing (train and validate the low-res stage first)", path)
    return np.load(path, mmap_mode="r", allow_pickle=False)


def materialize_previous_stage(folder: Path, lowres_model_root: Path, cases: dict[str, tuple[int, ...]]) -> None:
    """Write ``<case>.npy`` for each case id -> full-res spatial shape that lacks one (atomic, resumable)."""
    from toolkit.inference.cascade import load_previous_stage as load_lowres_onehot

    for case_id, shape in cases.items():
        path = Path(folder) / f"{case_id}.npy"
        if path.is_file():
            continue
        onehot = load_lowres_onehot(Path(lowres_model_root), case_id, shape)
        with atomic_write_path(path, suffix=".npy") as tmp, open(tmp, "wb") as fh:
            np.save(fh, onehot.argmax(0)[None].astype(np.int8), allow_pickle=False)


def _ball_op(mask: np.ndarray, op: str, radius: float) -> np.ndarray:
    def dilate(m: np.ndarray) -> np.ndarray:
        return m | (ndimage.distance_transform_edt(~m) <= radius) if m.any() else m

    def erode(m: np.ndarray) -> np.ndarray:
        return ndimage.distance_transform_edt(m) > radius

    ops = {"dilation": dilate, "erosion": erode,
           "opening": lambda m: dilate(erode(m)), "closing": lambda m: erode(dilate(m))}
    return ops[op](mask)


def random_binary_operator(onehot: np.ndarray, rng: np.random.Generator,
                           radius_range: tuple[float, float] = (1.0, 8.0)) -> np.ndarray:
    """Apply a random morphological operator to each foreground channel of one (K, ...) sample."""
    out = onehot.copy()
    for c in rng.permutation(np.arange(1, out.shape[0])):
        op = ("dilation", "erosion", "opening", "closing")[int(rng.integers(4))]
        before = out[c] > 0
        after = _ball_op(before, op, float(rng.uniform(*radius_range)))
        gained = after & ~before
        out[1:, gained] = 0
        out[c] = after
    return out


def remove_random_component(onehot: np.ndarray, rng: np.random.Generator, max_fraction: float = 0.15) -> np.ndarray:
    """Remove one random connected component (< ``max_fraction`` of the patch) from each foreground channel."""
    out = onehot.copy()
    limit = max_fraction * np.prod(out.shape[1:])
    for c in range(1, out.shape[0]):
        labels, n = ndimage.label(out[c] > 0)
        if n == 0:
            continue
        sizes = np.bincount(labels.ravel())[1:]
        small = np.flatnonzero(sizes < limit) + 1
        if small.size:
            out[c][labels == small[int(rng.integers(small.size))]] = 0
    return out


def previous_stage_to_data(data: np.ndarray, prev: np.ndarray, num_classes: int,
                           settings: AugmentationSettings | None, rng: np.random.Generator) -> np.ndarray:
    """Append the previous stage's labels ``prev`` (1, *spatial) of one sample to its ``data``
    (c, *spatial) as ``num_classes`` one-hot channels, corrupted per ``settings`` (training; None:
    validation, uncorrupted)."""
    labels = prev[0].astype(np.int64)
    onehot = (np.arange(num_classes).reshape(-1, *[1] * labels.ndim) == labels[None]).astype(np.float32)
    if settings is not None:
        if rng.uniform() < settings.p_binary_operator:
            onehot = random_binary_operator(onehot, rng, settings.ball_radius)
        if rng.uniform() < settings.p_remove_component:
            onehot = remove_random_component(onehot, rng, settings.max_component_fraction)
        onehot[0] = 1.0 - onehot[1:].max(0)
    return np.concatenate([data, onehot], axis=0)
