"""The augmentation pipeline of method.md 1.2, composed from batchgenerators transforms.

Order: rotation+scaling (with the centre crop from the larger sample to the final patch),
Gaussian noise, Gaussian blur, brightness, contrast, low-resolution simulation, gamma, gamma on
inverted intensities, mirroring. The spatial step runs in 2D (in-plane, the z slices of the patch
treated as extra channels) for the 2D U-Net and for 3D patches whose largest edge is >= 3x their
smallest ("dummy 2D"); low-resolution simulation then leaves z alone, as the reference does.

Choices where method.md is silent (taken from the reference implementation, written down here):
- a 2D patch counts as anisotropic (rotation U(-15, 15) instead of U(-180, 180)) when its longer
  edge exceeds 1.5x its shorter one;
- the sample size that the loader draws is the bounding box of the final patch rotated by the
  largest angle of the range (at most 90 degrees) about each axis, divided by 0.85 (the reference
  sizes for scale 0.85 while sampling scale factors down to 0.7);
- labels are interpolated linearly per label (order 1), images with cubic splines, border 0.
Random numbers come from numpy's global generator (batchgenerators' convention); the loader seeds
it per batch, which makes every batch a pure function of (seed, epoch, batch index).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from batchgenerators.augmentations.utils import rotate_coords_2d, rotate_coords_3d
from batchgenerators.transforms.abstract_transforms import AbstractTransform, Compose
from batchgenerators.transforms.color_transforms import (
    BrightnessMultiplicativeTransform,
    ContrastAugmentationTransform,
    GammaTransform,
)
from batchgenerators.transforms.noise_transforms import GaussianBlurTransform, GaussianNoiseTransform
from batchgenerators.transforms.resample_transforms import SimulateLowResolutionTransform
from batchgenerators.transforms.spatial_transforms import MirrorTransform, SpatialTransform

ANISOTROPY_RATIO = 3.0
SCALE_RANGE = (0.7, 1.4)
SAMPLE_SCALE_MIN = 0.85


@dataclass(frozen=True)
class SpatialPlan:
    """How the spatial augmentation treats one patch size."""

    dummy_2d: bool  # rotate/scale in-plane only (3D patch, largest edge >= 3x smallest)
    rotation: float  # max |angle| in radians, sampled U(-rotation, rotation)
    mirror_axes: tuple[int, ...]


def spatial_plan(patch_size: tuple[int, ...]) -> SpatialPlan:
    """Rotation range and 2D/3D mode of the spatial augmentation (method.md 1.2, step 1)."""
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
    if len(coords) == 3:
        for angles in ((rot, 0, 0), (0, rot, 0), (0, 0, rot)):
            box = np.maximum(box, np.abs(rotate_coords_3d(coords, *angles)))
    else:
        box = np.maximum(box, np.abs(rotate_coords_2d(coords, rot)))
    box = (box / SAMPLE_SCALE_MIN).astype(int)
    size = tuple(int(max(b, p)) for b, p in zip(box, inplane, strict=True))
    return (int(patch_size[0]), *size) if plan.dummy_2d else size


class To2D(AbstractTransform):
    """(b, c, z, y, x) -> (b, c*z, y, x) for data and seg, so a 2D transform acts in-plane."""

    def __call__(self, **batch):
        for key in ("data", "seg"):
            a = batch[key]
            batch[f"_{key}_shape"] = a.shape
            batch[key] = a.reshape(a.shape[0], a.shape[1] * a.shape[2], *a.shape[3:])
        return batch


class To3D(AbstractTransform):
    """Inverse of :class:`To2D` (the in-plane size may have changed to the final patch)."""

    def __call__(self, **batch):
        for key in ("data", "seg"):
            b, c, z = batch.pop(f"_{key}_shape")[:3]
            a = batch[key]
            batch[key] = a.reshape(b, c, z, *a.shape[2:])
        return batch


def training_transforms(patch_size: tuple[int, ...]) -> Compose:
    """The full training augmentation for a final patch size (2 or 3 axes)."""
    plan = spatial_plan(patch_size)
    rot = (-plan.rotation, plan.rotation)
    no_rot = (0.0, 0.0)
    three_d_rot = len(patch_size) == 3 and not plan.dummy_2d
    spatial = SpatialTransform(
        patch_size[1:] if plan.dummy_2d else patch_size,
        patch_center_dist_from_border=None, do_elastic_deform=False,
        do_rotation=True, angle_x=rot, angle_y=rot if three_d_rot else no_rot,
        angle_z=rot if three_d_rot else no_rot, p_rot_per_axis=1,
        do_scale=True, scale=SCALE_RANGE, border_mode_data="constant", border_cval_data=0, order_data=3,
        border_mode_seg="constant", border_cval_seg=0, order_seg=1, random_crop=False,
        p_el_per_sample=0, p_scale_per_sample=0.2, p_rot_per_sample=0.2,
        independent_scale_for_each_axis=False,
    )
    steps: list[AbstractTransform] = [To2D(), spatial, To3D()] if plan.dummy_2d else [spatial]
    steps += [
        GaussianNoiseTransform(noise_variance=(0, 0.1), p_per_sample=0.15),
        GaussianBlurTransform((0.5, 1.5), different_sigma_per_channel=True, p_per_sample=0.2, p_per_channel=0.5),
        BrightnessMultiplicativeTransform(multiplier_range=(0.7, 1.3), p_per_sample=0.15),
        ContrastAugmentationTransform(contrast_range=(0.65, 1.5), preserve_range=True, p_per_sample=0.15),
        SimulateLowResolutionTransform(
            zoom_range=(0.5, 1), per_channel=True, p_per_channel=0.5, order_downsample=0, order_upsample=3,
            p_per_sample=0.25, ignore_axes=(0,) if plan.dummy_2d else None,
        ),
        GammaTransform((0.7, 1.5), invert_image=False, per_channel=True, retain_stats=True, p_per_sample=0.15),
        GammaTransform((0.7, 1.5), invert_image=True, per_channel=True, retain_stats=True, p_per_sample=0.15),
        MirrorTransform(plan.mirror_axes),
    ]
    return Compose(steps)

