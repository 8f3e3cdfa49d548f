"""Random patches from preprocessed cases, with the foreground oversampling rule (docs/method.md 1.2).

Rules (reference data loader, re-derived):
- cases are drawn uniformly with replacement;
- in a batch of ``bs`` the last ``max(1, round(bs * 0.33))`` samples are foreground-forced (``bs`` is
  the *global* batch under data-parallel training: each rank draws its slice of the global sample
  indices, so the rule holds for the global batch, see loader.py): a random
  foreground class that has stored locations in ``properties["class_locations"]`` is chosen, then
  a random stored voxel of it, and the patch is centred there (clipped to the allowed range);
  a case without any foreground falls back to a random patch. For region labels the stored classes
  are the regions (their union is the foreground, preprocess.py ``location_targets``);
- with an ignore label, the other (random) samples are centred on a random *annotated* voxel (any
  voxel not carrying the ignore label), as nnU-Net v2 does, so sparse annotations are still seen;
- patches are drawn at the *sample size* (larger than the final patch, so that the rotation/scaling
  step has real image context; it centre-crops afterwards). A sample may extend
  ``(sample - final) / 2`` voxels past the image so that the final patch's centre can reach every
  border voxel; shorter images are padded symmetrically. Padding is 0 for the image and ``seg_pad``
  for the label: 0, or -1 ("outside the non-zero mask", as nnU-Net pads) when the plan normalises
  inside that mask, so the augmentation resets padded voxels of those channels to 0 as well;
- the 2D configuration stores 3D volumes; a 2D sample is one z slice (the forced slice holds the
  chosen foreground voxel);
- label values are mapped to indices (index i = i-th sorted label value, the ignore label after them,
  see targets.py) when the stored values are not already 0..K-1; -1 (outside the non-zero mask, see
  preprocess.py) stays -1.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from toolkit.preprocessing.storage import load_case

OVERSAMPLE_FOREGROUND = 0.33


def num_forced(batch_size: int, fraction: float = OVERSAMPLE_FOREGROUND) -> int:
    """How many samples of a batch (the last ones) are centred on foreground."""
    if fraction <= 0:
        return 0
    return max(1, round(batch_size * fraction))


def shard_indices(batch_size: int, rank: int, world_size: int) -> range:
    """The global sample indices rank ``rank`` of ``world_size`` draws: contiguous, sizes differing by
    at most one (the first ``batch_size % world_size`` ranks take one more)."""
    if not 0 <= rank < world_size or batch_size < world_size:
        raise ValueError(f"cannot split a batch of {batch_size} over {world_size} ranks (rank {rank})")
    base, extra = divmod(batch_size, world_size)
    start = rank * base + min(rank, extra)
    return range(start, start + base + (rank < extra))


def bbox_bounds(shape: tuple[int, ...], final: tuple[int, ...], sample: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Lowest and highest allowed lower corner of a ``sample``-sized box along each axis."""
    shape_a, final_a, sample_a = (np.asarray(v, dtype=int) for v in (shape, final, sample))
    need = sample_a - final_a
    need = np.where(need + shape_a < sample_a, sample_a - shape_a, need)
    lbs = -(need // 2)
    ubs = shape_a + need // 2 + need % 2 - sample_a
    return lbs, ubs


def crop_with_pad(array: np.ndarray, lower: np.ndarray, size: tuple[int, ...], pad: int = 0) -> np.ndarray:
    """``array[:, lower:lower+size]`` over the trailing axes, padded with ``pad`` where the box leaves it."""
    spatial = array.shape[1:]
    src, widths = [slice(None)], [(0, 0)]
    for lo, sz, dim in zip(lower, size, spatial, strict=True):
        a, b = max(int(lo), 0), min(int(lo) + sz, dim)
        src.append(slice(a, max(a, b)))
        widths.append((a - int(lo), int(lo) + sz - max(a, b)))
    out = np.asarray(array[tuple(src)])
    if any(w != (0, 0) for w in widths):
        out = np.pad(out, widths, mode="constant", constant_values=pad)
    return out


@dataclass(frozen=True)
class PatchSpec:
    """What one loader draws: picklable, so background workers can rebuild the sampler."""

    folder: str
    case_ids: tuple[str, ...]
    final_size: tuple[int, ...]  # the network patch (2 or 3 axes)
    sample_size: tuple[int, ...]  # drawn size before the spatial transform (>= final_size)
    batch_size: int
    labels: tuple[int, ...]  # stored label value of each index the loss reads (targets.sampler_values)
    oversample: float = OVERSAMPLE_FOREGROUND
    cascade_folder: str | None = None  # predicted_next_stage/<previous config>/ (cascade only)
    seg_pad: int = 0  # label padding: -1 for plans that normalise inside the non-zero mask
    foreground_keys: tuple[str, ...] | None = None  # class_locations keys of forced patches; None: labels[1:]
    annotated_key: str | None = None  # ignore label: class_locations key of the annotated voxels

    def forced_keys(self) -> frozenset[str]:
        """The ``class_locations`` keys a foreground-forced patch may be centred on."""
        if self.foreground_keys is not None:
            return frozenset(self.foreground_keys)
        return frozenset(str(int(v)) for v in self.labels[1:])


class PatchSampler:
    """Draws (data, seg[, prev]) batches from memory-mapped preprocessed cases."""

    def __init__(self, spec: PatchSpec) -> None:
        self.spec = spec
        self._cache: dict[str, tuple[np.ndarray, np.ndarray, dict]] = {}
        self._prev_cache: dict[str, np.ndarray] = {}
        labels = np.asarray(spec.labels, dtype=int)
        self._lut = None
        if not np.array_equal(labels, np.arange(len(labels))):
            self._lut = np.zeros(int(labels.max()) + 2, dtype=np.int16)
            self._lut[labels] = np.arange(len(labels))
            self._lut[-1] = -1  # index -1 (outside the non-zero mask) maps to itself

    def _case(self, case_id: str) -> tuple[np.ndarray, np.ndarray, dict]:
        if case_id not in self._cache:
            data, seg, props = load_case(Path(self.spec.folder), case_id, mmap=True)
            if seg is None:
                raise ValueError(f"case {case_id} has no segmentation; it cannot be trained on")
            self._cache[case_id] = (data, seg, props)
        return self._cache[case_id]

    def _prev(self, case_id: str) -> np.ndarray:
        from toolkit.training.cascade import load_previous_stage

        if case_id not in self._prev_cache:
            self._prev_cache[case_id] = load_previous_stage(Path(self.spec.cascade_folder), case_id)
        return self._prev_cache[case_id]

    def sample(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """One batch: ``data`` (b, c, *sample), ``seg`` (b, 1, *sample) int16 channel indices,
        plus ``prev`` (b, 1, *sample) previous-stage labels for the cascade."""
        n_forced = num_forced(self.spec.batch_size, self.spec.oversample)
        samples = [self.sample_one(rng, j >= self.spec.batch_size - n_forced) for j in range(self.spec.batch_size)]
        return {k: np.stack([s[k] for s in samples]) for k in samples[0]}

    def sample_one(self, rng: np.random.Generator, force: bool,
                   window: tuple[tuple[int, ...], tuple[int, ...]] | None = None) -> dict[str, np.ndarray]:
        """One sample (no batch axis): a uniformly drawn case, foreground-centred when ``force``.
        ``window`` (offset, size) reads only that part of the sample box (same draws, less I/O)."""
        s = self.spec
        case_id = s.case_ids[int(rng.integers(len(s.case_ids)))]
        data, seg, props = self._case(case_id)
        arrays = [data, seg] + ([self._prev(case_id)] if s.cascade_folder else [])
        arrays = self._draw(arrays, props, force, rng, window)
        seg_patch = arrays[1].astype(np.int16, copy=False)
        out = {"data": arrays[0].astype(np.float32, copy=False),
               "seg": self._lut[seg_patch] if self._lut is not None else seg_patch}
        if s.cascade_folder:
            out["prev"] = arrays[2].astype(np.int16, copy=False)
        return out

    def _draw(self, arrays: list[np.ndarray], props: dict, force: bool, rng: np.random.Generator,
              window: tuple[tuple[int, ...], tuple[int, ...]] | None) -> list[np.ndarray]:
        s = self.spec
        shape = arrays[0].shape[1:]
        loc = _centre(props, s, force, rng)
        if len(s.final_size) == 2:  # 2D: pick a slice, then a 2D box in (y, x)
            z = int(loc[0]) if loc is not None else int(rng.integers(shape[0]))
            arrays = [a[:, z] for a in arrays]
            shape, loc = shape[1:], (loc[1:] if loc is not None else None)
        lbs, ubs = bbox_bounds(tuple(shape), s.final_size, s.sample_size)
        if loc is None:
            lower = np.array([rng.integers(lo, hi + 1) for lo, hi in zip(lbs, ubs, strict=True)])
        else:
            half = np.asarray(s.sample_size) // 2
            lower = np.minimum(np.maximum(lbs, np.asarray(loc) - half), ubs)
        offset, size = (lower + np.asarray(window[0]), window[1]) if window is not None else (lower, s.sample_size)
        return [crop_with_pad(a, offset, size, s.seg_pad if i == 1 else 0) for i, a in enumerate(arrays)]


def _centre(props: dict, spec: PatchSpec, force: bool, rng: np.random.Generator) -> np.ndarray | None:
    """The voxel a patch is centred on, None for a uniformly random patch.

    Forced patches: a random stored voxel of a random foreground class (or region) present in the case;
    with an ignore label, a case without foreground falls back to its annotated voxels. Random patches of
    an ignore-label dataset are centred on a random annotated voxel, so they hold annotation (nnU-Net v2's
    ``get_bbox`` with ``has_ignore``); without annotated voxels they are uniformly random."""
    locs = props.get("class_locations") or {}
    if force:
        keys = spec.forced_keys()
        eligible = sorted(k for k, v in locs.items() if k in keys and len(v) > 0)
        if not eligible and spec.annotated_key is not None and len(locs.get(spec.annotated_key, ())) > 0:
            eligible = [spec.annotated_key]
    elif spec.annotated_key is not None:
        eligible = [spec.annotated_key] if len(locs.get(spec.annotated_key, ())) > 0 else []
    else:
        return None
    if not eligible:
        return None
    pts = locs[eligible[int(rng.integers(len(eligible)))]]
    return np.asarray(pts[int(rng.integers(len(pts)))], dtype=int)
