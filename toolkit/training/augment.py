"""The augmentation pipeline of docs/method.md 1.2 on one sample, with an explicit random generator.

Order: rotation+scaling (with the centre crop from the larger sample to the final patch),
Gaussian noise, Gaussian blur, brightness, contrast, low-resolution simulation, gamma, gamma on
inverted intensities, mirroring. The spatial step runs in 2D (in-plane, slice by slice) for the 2D
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

from toolkit.training.transforms import intensity
from toolkit.training.transforms.lowres import simulate_low_resolution
from toolkit.training.transforms.spatial import crop_window, draw_matrix, rotation_matrix, spatial_transform

ANISOTROPY_RATIO = 3.0
SAMPLE_SCALE_MIN = 0.85
# (probability per sample, parameters) of the intensity steps, docs/method.md 1.2 steps 2-7
P_NOISE, NOISE_STD = 0.15, (0.0, 0.1)
P_BLUR, P_BLUR_CHANNEL, BLUR_SIGMA = 0.2, 0.5, (0.5, 1.5)
P_BRIGHTNESS, BRIGHTNESS = 0.15, (0.7, 1.3)
P_CONTRAST, CONTRAST = 0.15, (0.65, 1.5)
P_LOWRES, P_LOWRES_CHANNEL, LOWRES_ZOOM = 0.25, 0.5, (0.5, 1.0)
P_GAMMA, P_GAMMA_INVERTED, GAMMA = 0.15, 0.15, (0.7, 1.5)
P_MIRROR = 0.5  # per axis, step 8


@dataclass(frozen=True)
class SpatialPlan:
    """How the spatial augmentation treats one patch size."""

    dummy_2d: bool  # rotate/scale in-plane only (3D patch, largest edge >= 3x smallest)
    rotation: float  # max |angle| in radians, sampled U(-rotation, rotation)
    mirror_axes: tuple[int, ...]


def spatial_plan(patch_size: tuple[int, ...]) -> SpatialPlan:
    """Rotation range and 2D/3D mode of the spatial augmentation (docs/method.md 1.2, step 1)."""
    deg = np.pi / 180
    ndim = len(patch_size)
    if ndim == 2:
        aniso = max(patch_size) / min(patch_size) > 1.5
        return SpatialPlan(False, (15 if aniso else 180) * deg, (0, 1))
    dummy = max(patch_size) / min(patch_size) >= ANISOTROPY_RATIO
    return SpatialPlan(dummy, (180 if dummy else 30) * deg, (0, 1, 2))


def sample_size(patch_size: tuple[int, ...]) -> tuple[int, ...]:
    """Size to draw so that after rotation/scaling the centre crop holds few padded voxels."""
    plan = spatial_plan(patch_size)
    inplane = patch_size[1:] if plan.dummy_2d else patch_size
    rot = min(plan.rotation, np.pi / 2)
    coords = np.asarray(inplane, dtype=float)
    box = coords.copy()
    angle_sets = ((rot, 0, 0), (0, rot, 0), (0, 0, rot)) if len(coords) == 3 else ((rot,),)
    for angles in angle_sets:
        box = np.maximum(box, np.abs(rotation_matrix(angles).T @ coords))
    box = (box / SAMPLE_SCALE_MIN).astype(int)
    size = tuple(int(max(b, p)) for b, p in zip(box, inplane, strict=True))
    return (int(patch_size[0]), *size) if plan.dummy_2d else size


class Augmenter:
    """The training augmentation for one final patch size (2 or 3 axes)."""

    def __init__(self, patch_size: tuple[int, ...], sample: tuple[int, ...] | None = None) -> None:
        import torch  # noqa: F401  (the spatial step's; imported now, not seconds into the first rotated sample)

        self.patch = tuple(int(p) for p in patch_size)
        self.plan = spatial_plan(self.patch)
        self.sample = tuple(int(s) for s in sample) if sample is not None else sample_size(self.patch)
        self.inplane = self.patch[1:] if self.plan.dummy_2d else self.patch
        self.num_angles = 3 if len(self.inplane) == 3 else 1

    def draw_spatial(self, rng: np.random.Generator) -> np.ndarray | None:
        """Rotation/scaling matrix of one sample, None for a plain centre crop (step 1's draws)."""
        return draw_matrix(rng, self.num_angles, self.plan.rotation)

    def read_window(self, matrix: np.ndarray | None) -> tuple[tuple[int, ...], tuple[int, ...]] | None:
        """(offset, size) within the sample box that the spatial step will use; None = all of it."""
        if matrix is not None:
            return None
        return crop_window(self.sample, self.patch)

    def __call__(self, data: np.ndarray, seg: np.ndarray, matrix: np.ndarray | None,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Augment one sample: ``data`` (c, *sample) float32 and ``seg`` (k, *sample), or the
        already cropped final patch when ``matrix`` is None. Returns (c, *patch), (k, *patch)."""
        if matrix is not None or data.shape[1:] != self.patch:
            data, seg = spatial_transform(data, seg, matrix, self.inplane)
        data = np.array(data, dtype=np.float32)  # own, writable copy: the steps below work in place
        self._intensity(data, rng)
        return intensity.mirror(data, seg, rng, self.plan.mirror_axes, P_MIRROR)

    def _intensity(self, data: np.ndarray, rng: np.random.Generator) -> None:
        if rng.uniform() < P_NOISE:
            intensity.gaussian_noise(data, rng, NOISE_STD)
        if rng.uniform() < P_BLUR:
            intensity.gaussian_blur(data, rng, BLUR_SIGMA, P_BLUR_CHANNEL)
        if rng.uniform() < P_BRIGHTNESS:
            intensity.brightness(data, rng, BRIGHTNESS)
        if rng.uniform() < P_CONTRAST:
            intensity.contrast(data, rng, CONTRAST)
        if rng.uniform() < P_LOWRES:
            ignore = (0,) if self.plan.dummy_2d else ()
            simulate_low_resolution(data, rng, LOWRES_ZOOM, P_LOWRES_CHANNEL, ignore)
        if rng.uniform() < P_GAMMA:
            intensity.gamma(data, rng, GAMMA, invert=False)
        if rng.uniform() < P_GAMMA_INVERTED:
            intensity.gamma(data, rng, GAMMA, invert=True)
