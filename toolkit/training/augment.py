"""The augmentation pipeline of docs/method.md 1.2 on one sample, with an explicit random generator.

Order: rotation+scaling (with the centre crop from the larger sample to the final patch),
Gaussian noise, Gaussian blur, brightness, contrast, low-resolution simulation, gamma, gamma on
inverted intensities, mirroring, then (as nnU-Net v2's MaskImageTransform) the channels that the
plan normalises inside the non-zero mask (``use_mask_for_norm``) set to 0 wherever the label says
"outside the mask" (-1: marked by preprocessing, and the sampler's padding for such plans), so
noise, blur or brightness never leave values there that the network never sees at inference.
Every probability and range is a field of :class:`AugmentationSettings` (defaults: docs/method.md 1.2;
the table with each value's source and nnU-Net v2's differences is docs/augmentation.md). The spatial step runs in 2D (in-plane, slice by slice) for the 2D
U-Net and for 3D patches whose largest edge is >= 3x their smallest ("dummy 2D"); low-resolution
simulation then leaves z alone, as the reference does. The transforms live in
``toolkit.training.transforms`` (spatial: torch grid_sample; see there for interpolation orders).

Choices where the paper (docs/method.md 5) is silent (taken from the reference implementation, written down here):
- a 2D patch counts as anisotropic (rotation U(-15, 15) instead of U(-180, 180)) when its longer
  edge exceeds 1.5x its shorter one;
- the sample size that the loader draws is the bounding box of the final patch rotated by the
  largest angle of the range (at most 90 degrees) about each axis, divided by 0.85 (the reference
  sizes for scale 0.85 while sampling scale factors down to 0.7);
- images are resampled linearly (as nnU-Net v2 does), labels per label linearly + arg-max, border 0;
- blur is 3D also for dummy-2D patches (batchgenerators v1, which the reference used, does so).
The spatial parameters are drawn first (:meth:`Augmenter.draw_spatial`) so that the loader can read
just the final patch when no rotation/scaling is drawn (:meth:`Augmenter.read_window`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from toolkit.training.augment_settings import AugmentationSettings
from toolkit.training.transforms import intensity
from toolkit.training.transforms.lowres import simulate_low_resolution
from toolkit.training.transforms.spatial import (
    crop_window,
    draw_matrix,
    draw_scale,
    rotation_matrix,
    spatial_transform,
)

DEFAULTS = AugmentationSettings()
OUTSIDE_MASK = -1  # label value of the region outside the non-zero mask (and of padding, for such plans)


@dataclass(frozen=True)
class SpatialPlan:
    """How the spatial augmentation treats one patch size."""

    dummy_2d: bool  # rotate/scale in-plane only (3D patch, largest edge >= dummy_2d_ratio x smallest)
    rotation: float  # max |angle| in radians, sampled U(-rotation, rotation)
    mirror_axes: tuple[int, ...]


def spatial_plan(patch_size: tuple[int, ...], settings: AugmentationSettings = DEFAULTS) -> SpatialPlan:
    """Rotation range and 2D/3D mode of the spatial augmentation (docs/method.md 1.2, step 1)."""
    s, deg = settings, np.pi / 180
    ndim = len(patch_size)
    mirror = tuple(a for a in range(ndim) if s.mirror_axes is None or a in s.mirror_axes)
    if ndim == 2:
        aniso = max(patch_size) / min(patch_size) > s.anisotropic_2d_ratio
        return SpatialPlan(False, (s.rotation_2d_anisotropic if aniso else s.rotation_2d) * deg, mirror)
    dummy = max(patch_size) / min(patch_size) >= s.dummy_2d_ratio
    return SpatialPlan(dummy, (s.rotation_dummy_2d if dummy else s.rotation_3d) * deg, mirror)


def sample_size(patch_size: tuple[int, ...], settings: AugmentationSettings = DEFAULTS) -> tuple[int, ...]:
    """Size to draw so that after rotation/scaling the centre crop holds few padded voxels."""
    plan = spatial_plan(patch_size, settings)
    inplane = patch_size[1:] if plan.dummy_2d else patch_size
    rot = min(plan.rotation, np.pi / 2)
    coords = np.asarray(inplane, dtype=float)
    box = coords.copy()
    angle_sets = ((rot, 0, 0), (0, rot, 0), (0, 0, rot)) if len(coords) == 3 else ((rot,),)
    for angles in angle_sets:
        box = np.maximum(box, np.abs(rotation_matrix(angles).T @ coords))
    box = (box / settings.sample_scale_min).astype(int)
    size = tuple(int(max(b, p)) for b, p in zip(box, inplane, strict=True))
    return (int(patch_size[0]), *size) if plan.dummy_2d else size


class Augmenter:
    """The training augmentation for one final patch size (2 or 3 axes).

    ``mask_channels``: image channels normalised inside the non-zero mask (the plan's
    ``use_mask_for_norm``), reset to 0 where seg[0] < 0 after the other steps."""

    def __init__(self, patch_size: tuple[int, ...], sample: tuple[int, ...] | None = None,
                 settings: AugmentationSettings = DEFAULTS, mask_channels: tuple[int, ...] = ()) -> None:
        import torch  # noqa: F401  (the spatial step's; imported now, not seconds into the first rotated sample)

        self.settings = settings
        self.patch = tuple(int(p) for p in patch_size)
        self.plan = spatial_plan(self.patch, settings)
        self.sample = tuple(int(s) for s in sample) if sample is not None else sample_size(self.patch, settings)
        self.inplane = self.patch[1:] if self.plan.dummy_2d else self.patch
        self.num_angles = 3 if len(self.inplane) == 3 else 1
        self.mask_channels = tuple(mask_channels) if settings.reset_outside_mask else ()
        self.pad_label = OUTSIDE_MASK if mask_channels else 0

    def draw_spatial(self, rng: np.random.Generator) -> np.ndarray | None:
        """Rotation/scaling matrix of one sample, None for a plain centre crop (step 1's draws)."""
        s = self.settings
        return draw_matrix(rng, self.num_angles, self.plan.rotation, s.p_rotation, s.p_scale, s.scale)

    def read_window(self, matrix: np.ndarray | None) -> tuple[tuple[int, ...], tuple[int, ...]] | None:
        """(offset, size) within the sample box that the spatial step will use; None = all of it."""
        if matrix is not None:
            return None
        return crop_window(self.sample, self.patch)

    def __call__(self, data: np.ndarray, seg: np.ndarray, matrix: np.ndarray | None,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Augment one sample: ``data`` (c, *sample) float32 and ``seg`` (k, *sample), or the
        already cropped final patch when ``matrix`` is None. Returns (c, *patch), (k, *patch);
        seg[0] keeps the -1 of the outside-mask region (the loader maps it to 0)."""
        if matrix is not None or data.shape[1:] != self.patch:
            data, seg = spatial_transform(data, seg, matrix, self.inplane, self.pad_label)
        data = np.array(data, dtype=np.float32)  # own, writable copy: the steps below work in place
        self._intensity(data, rng)
        data, seg = intensity.mirror(data, seg, intensity.draw_flips(rng, self.plan.mirror_axes, self.settings.p_mirror))
        if self.mask_channels:
            outside = seg[0] < 0
            for c in self.mask_channels:
                data[c][outside] = 0
        return data, seg

    def _intensity(self, data: np.ndarray, rng: np.random.Generator) -> None:
        s, n = self.settings, data.shape[0]
        if rng.uniform() < s.p_noise:
            intensity.gaussian_noise(data, rng.uniform(*s.noise_std), rng)
        if rng.uniform() < s.p_blur:
            sigmas = intensity.per_channel(rng, n, s.p_blur_channel, lambda: rng.uniform(*s.blur_sigma), True)
            intensity.gaussian_blur(data, sigmas)
        if rng.uniform() < s.p_brightness:
            intensity.brightness(data, [rng.uniform(*s.brightness) for _ in range(n)])
        if rng.uniform() < s.p_contrast:
            intensity.contrast(data, [draw_scale(rng, *s.contrast) for _ in range(n)])
        if rng.uniform() < s.p_lowres:
            zooms = intensity.per_channel(rng, n, s.p_lowres_channel, lambda: rng.uniform(*s.lowres_zoom))
            simulate_low_resolution(data, zooms, (0,) if self.plan.dummy_2d else ())
        if rng.uniform() < s.p_gamma:
            intensity.gamma(data, [draw_scale(rng, *s.gamma) for _ in range(n)], invert=False)
        if rng.uniform() < s.p_gamma_inverted:
            intensity.gamma(data, [draw_scale(rng, *s.gamma) for _ in range(n)], invert=True)
