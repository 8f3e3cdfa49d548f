"""The planner's fixed numbers, as data (docs/method.md 1.3; nnU-Net v2's ExperimentPlanner values).

Every rule in :mod:`toolkit.planning` reads its thresholds from :class:`PlannerSettings`, so a
variant planner is a different settings object, never a subclass. The named presets
(``default``, ``resenc-m``, ``resenc-l``, ``resenc-xl``) are overrides of these fields shipped as
``toolkit/planning/presets.yaml`` (:mod:`toolkit.planning.presets`); the defaults below ARE the
``default`` preset (nnunetv2 2.8.1's ExperimentPlanner, plans "nnUNetPlans").
"""

from __future__ import annotations

from dataclasses import dataclass

from toolkit.errors import SegkitError

ARCHITECTURES = ("plain_unet", "residual_encoder_unet")
PATCH_FITS_AT = ("min_batch", "reference_batch")


@dataclass(frozen=True)
class PlannerSettings:
    # which preset these are, and the nnU-Net planner they reproduce (recorded in plans.json, --explain)
    preset: str = "default"
    nnunet_planner: str = "ExperimentPlanner"
    nnunet_plans_name: str = "nnUNetPlans"
    # network: encoder stages get n_blocks_per_stage[s] convs (plain) or residual blocks (resenc), decoder
    # stages n_conv_per_stage_decoder[s] convs; both tables are cut to the planned number of stages
    architecture: str = "plain_unet"
    n_blocks_per_stage: tuple[int, ...] = (2,) * 14
    n_conv_per_stage_decoder: tuple[int, ...] = (2,) * 13
    # memory model: per-sample sum of feature-map voxels known to fit the reference GPU at a batch size
    gpu_memory_gb: float = 8.0  # the preset's GPU-memory target; --gpu-memory-gb overrides it
    reference_voxels_3d: float = 560e6
    reference_voxels_2d: float = 85e6
    reference_batch_3d: int = 2
    reference_batch_2d: int = 12
    reference_gpu_gb: float = 8.0
    # shrink the patch until this batch fits: the minimum batch (ExperimentPlanner) or the reference
    # batch of the configuration's dimension (nnU-Net's ResEnc planners: 2 in 3D, 12 in 2D)
    patch_fits_at: str = "min_batch"
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
    lowres_spacing_step: float = 1.03  # +3% per step as nnU-Net v2 (the paper: 1%; docs/method.md 5)
    lowres_max_steps: int = 5000
    # normalisation
    mask_for_norm_relative_size: float = 0.75

    def reference_voxels(self, ndim: int, gpu_memory_gb: float) -> float:
        """Feature-map voxels (one sample) that fit at the reference batch size, scaled to the budget."""
        ref = self.reference_voxels_3d if ndim == 3 else self.reference_voxels_2d
        return ref * gpu_memory_gb / self.reference_gpu_gb

    def reference_batch(self, ndim: int) -> int:
        return self.reference_batch_3d if ndim == 3 else self.reference_batch_2d

    def fit_batch(self, ndim: int) -> int:
        """The batch size the patch is shrunk for (``patch_fits_at``)."""
        return self.min_batch_size if self.patch_fits_at == "min_batch" else self.reference_batch(ndim)

    def architecture_for(self, n_stages: int) -> dict[str, object]:
        """plans.json's per-configuration ``architecture`` entry for a network of ``n_stages`` stages."""
        if n_stages > len(self.n_blocks_per_stage) or n_stages - 1 > len(self.n_conv_per_stage_decoder):
            raise SegkitError(f"preset {self.preset!r} has blocks for at most {len(self.n_blocks_per_stage)} "
                             f"stages, the plan needs {n_stages}")
        return {"name": self.architecture, "n_blocks_per_stage": list(self.n_blocks_per_stage[:n_stages]),
                "n_conv_per_stage_decoder": list(self.n_conv_per_stage_decoder[:n_stages - 1])}


DEFAULT_SETTINGS = PlannerSettings()
