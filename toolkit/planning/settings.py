"""The planner's fixed numbers, as data (docs/method.md 1.3; nnU-Net v2's ExperimentPlanner values).

Every rule in :mod:`toolkit.planning` reads its thresholds from :class:`PlannerSettings`, so a
variant planner is a different settings object, never a subclass.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PlannerSettings:
    # memory model: per-sample sum of feature-map voxels known to fit the reference GPU at a batch size
    reference_voxels_3d: float = 560e6
    reference_voxels_2d: float = 85e6
    reference_batch_3d: int = 2
    reference_batch_2d: int = 12
    reference_gpu_gb: float = 8.0
    # patch, topology and batch
    initial_patch_edge_3d: int = 256  # start: isotropic-in-mm patch with the volume of 256^3 voxels
    initial_patch_edge_2d: int = 2048  # 2D: the area of 2048^2 pixels
    min_feature_map_edge: int = 4  # pool only axes with >= 2x this; a lone axis needs >= 3x this
    pool_spacing_ratio: float = 2.0  # axes within this factor of the finest spacing are pooled / get 3-kernels
    min_batch_size: int = 2
    max_dataset_fraction_per_batch: float = 0.05
    # spacing
    anisotropy_threshold: float = 3.0
    anisotropic_percentile: float = 10.0
    # cascade
    lowres_creation_threshold: float = 0.25  # search a low-res spacing while the patch covers < 25%
    lowres_min_size_ratio: float = 2.0  # keep low-res only if its median image has <= 1/2 the voxels
    lowres_spacing_step: float = 1.01  # +1% per step (docs/method.md 1.3 "3D cascade"; nnU-Net v2 uses 3%)
    lowres_max_steps: int = 5000
    # normalisation
    mask_for_norm_relative_size: float = 0.75

    def reference_voxels(self, ndim: int, gpu_memory_gb: float) -> float:
        """Feature-map voxels (one sample) that fit at the reference batch size, scaled to the budget."""
        ref = self.reference_voxels_3d if ndim == 3 else self.reference_voxels_2d
        return ref * gpu_memory_gb / self.reference_gpu_gb

    def reference_batch(self, ndim: int) -> int:
        return self.reference_batch_3d if ndim == 3 else self.reference_batch_2d


DEFAULT_SETTINGS = PlannerSettings()
