"""Every planning rule of docs/method.md 1.3 on small hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from toolkit.dataset import DatasetSpec
from toolkit.errors import SegkitError
from toolkit.network.architecture import UNetSpec
from toolkit.planning import plan_experiment
from toolkit.planning.cascade import next_lowres_spacing, plan_lowres
from toolkit.planning.configuration import estimate_voxels, initial_patch, plan_configuration
from toolkit.planning.normalization import normalization_schemes
from toolkit.planning.spacing import median_shape_at, resampled_shape, target_spacing
from toolkit.planning.topology import pad_to_divisor, plan_topology


def _spec(channels=("MRI",), labels=None, n=10):
    labels = labels or {"background": 0, "a": 1}
    return DatasetSpec(root=__import__("pathlib").Path("Dataset999_Test"),
                       channel_names={str(i): c for i, c in enumerate(channels)},
                       labels=labels, num_training=n, file_ending=".nii.gz", raw={})


# ---- target spacing -------------------------------------------------------------------------------

def test_isotropic_spacing_is_the_median():
    trace: list[str] = []
    sp = target_spacing([[1, 1, 1], [1.2, 1.2, 1.2], [0.8, 0.8, 0.8]], [[100, 100, 100]] * 3, trace=trace)
    assert sp == [1.0, 1.0, 1.0]
    assert not any("anisotropic" in t for t in trace)


def test_anisotropic_z_takes_the_10th_percentile():
    spacings = [[5, 1.5, 1.5]] * 2 + [[10, 1.5, 1.5]] * 9  # 11 cases: 10th percentile = sorted[1] = 5
    shapes = [[18, 200, 200]] * 2 + [[9, 200, 200]] * 9
    trace: list[str] = []
    assert target_spacing(spacings, shapes, trace=trace) == [5.0, 1.5, 1.5]
    assert any("z is anisotropic" in t and "10th percentile = 5 mm" in t for t in trace)


def test_anisotropic_spacing_with_many_voxels_keeps_the_median():
    spacings = [[5, 1, 1]] * 4 + [[2, 1, 1]]
    shapes = [[200, 256, 256]] * 5  # 200 * 3 >= 256: enough voxels along z
    trace: list[str] = []
    assert target_spacing(spacings, shapes, trace=trace) == [5.0, 1.0, 1.0]
    assert any("keep the median" in t for t in trace)


def test_percentile_is_never_finer_than_the_other_axes():
    spacings = [[0.5, 1, 1]] * 2 + [[10, 1, 1]] * 9
    shapes = [[10, 300, 300]] * 11
    sp = target_spacing(spacings, shapes)
    assert sp[0] == pytest.approx(1.0 + 1e-5)


def test_anisotropic_in_plane_axis():
    spacings = [[1, 1, 2]] * 2 + [[1, 1, 6]] * 9  # x is the coarse axis
    shapes = [[200, 200, 30]] * 11
    assert target_spacing(spacings, shapes) == [1.0, 1.0, 2.0]


def test_median_shape_after_resampling_each_case():
    assert resampled_shape([9, 237, 256], [10, 1.5625, 1.25], [5, 1.5625, 1.5625]) == [18, 237, 205]
    med = median_shape_at([[10, 1, 1], [5, 1, 1], [2, 1, 1]], [[9, 10, 10], [20, 10, 10], [40, 10, 10]], [5, 1, 1])
    assert med == [18.0, 10.0, 10.0]  # resampled z: 18, 20, 16


# ---- topology -------------------------------------------------------------------------------------

def test_isotropic_topology_pools_all_axes_five_times():
    t = plan_topology([1, 1, 1], [128, 128, 128])
    assert t.pool_strides == ((2, 2, 2),) * 5
    assert t.conv_kernel_sizes == ((3, 3, 3),) * 6
    assert t.patch_size == (128, 128, 128)


def test_anisotropic_z_topology_acdc():
    t = plan_topology([5, 1.5625, 1.5625], [18, 237, 208])
    assert t.pool_strides == ((1, 2, 2), (2, 2, 2), (2, 2, 2), (1, 2, 2), (1, 2, 2))
    assert t.conv_kernel_sizes == ((1, 3, 3),) + ((3, 3, 3),) * 5
    assert t.patch_size == (20, 256, 224)  # padded to multiples of (4, 32, 32)
    assert t.divisor == (4, 32, 32)


def test_anisotropic_in_plane_topology():
    t = plan_topology([1, 1, 4], [64, 64, 16])
    assert t.pool_strides == ((2, 2, 1), (2, 2, 1), (2, 2, 2), (2, 2, 2))
    assert t.conv_kernel_sizes == ((3, 3, 1), (3, 3, 1), (3, 3, 3), (3, 3, 3), (3, 3, 3))


def test_tiny_images_stop_pooling_early():
    assert plan_topology([1, 1, 1], [10, 10, 10]).pool_strides == ((2, 2, 2),)  # 10 -> 5 < 8
    t = plan_topology([1, 1, 1], [6, 6, 6])
    assert t.pool_strides == () and t.conv_kernel_sizes == ((3, 3, 3),) and t.patch_size == (6, 6, 6)


def test_a_lone_axis_needs_twelve_voxels():
    assert plan_topology([1, 1], [16, 6]).pool_strides == ((2, 1),)  # 16 -> 8; lone 8 < 12 stops
    assert plan_topology([1, 1], [11, 6]).pool_strides == ()


def test_layers_are_five_per_downsampling_plus_two():
    t = plan_topology([1, 1, 1], [128, 128, 128])
    spec = UNetSpec(1, 2, tuple([32] * t.n_stages), t.conv_kernel_sizes, t.stage_strides)
    convs = 2 * spec.n_stages + 3 * (spec.n_stages - 1)  # encoder 2/stage, decoder transp + 2 per stage
    assert convs == 5 * len(t.pool_strides) + 2


def test_pad_to_divisor():
    assert pad_to_divisor([18, 237, 208], [4, 32, 32]) == (20, 256, 224)
    assert pad_to_divisor([20, 256, 224], [4, 32, 32]) == (20, 256, 224)


# ---- patch, memory and batch ----------------------------------------------------------------------

def test_initial_patch_is_isotropic_in_mm_and_clipped():
    assert initial_patch([1, 1, 1], [1000, 1000, 1000]) == [256, 256, 256]
    assert initial_patch([2, 1, 1], [1000, 1000, 1000]) == [161, 323, 323]
    assert initial_patch([1, 1, 1], [40, 64, 64]) == [40, 64, 64]
    assert initial_patch([1, 1], [5000, 5000]) == [2048, 2048]


# The ACDC 3d_fullres network (docs/method.md 3: patch 20x256x224, strides (1,2,2),(2,2,2),(2,2,2),(1,2,2),(1,2,2)),
# its feature-map sum counted by hand as nnunetv2's planner counts it (docs/method.md 1.3: every conv and
# transposed-conv output of the network built WITHOUT deep supervision, so only the full-resolution 1x1
# head; 32 features doubling per stage, capped at 320; here 4 classes):
#   stage  shape (voxels)             features
#   0      20 x 256 x 224 = 1,146,880   32
#   1      20 x 128 x 112 =   286,720   64
#   2      10 x  64 x  56 =    35,840  128
#   3       5 x  32 x  28 =     4,480  256
#   4       5 x  16 x  14 =     1,120  320
#   5       5 x   8 x   7 =       280  320
# sum over stages of features x voxels (0-5):  36,700,160 + 18,350,080 + 4,587,520 + 1,146,880
#                                              + 358,400 + 89,600 = 61,232,640
# encoder, two convs per stage:                 2 x 61,232,640            = 122,465,280
# decoder stages 4..0, transposed conv + 2 convs: 3 x (61,232,640 - 89,600) = 183,429,120
# head at resolution 0:                         4 x 1,146,880             =   4,587,520
ACDC_FULLRES_VOXELS = 2 * 61_232_640 + 3 * (61_232_640 - 89_600) + 4 * 1_146_880
# the training network also has deep-supervision heads at resolutions 1-3 (not in the estimate)
ACDC_LOWER_HEADS = 4 * (286_720 + 35_840 + 4_480)


def test_estimate_is_the_hand_counted_feature_map_sum():
    assert ACDC_FULLRES_VOXELS == 310_481_920
    t = plan_topology([5, 1.5625, 1.5625], [18, 237, 208])
    assert t.patch_size == (20, 256, 224)
    assert estimate_voxels(t, 1, 4) == ACDC_FULLRES_VOXELS
    plan = {"conv_kernel_sizes": t.conv_kernel_sizes, "pool_strides": t.pool_strides}
    # the network that is built, counted by its own spec, with and without the lower heads
    assert UNetSpec.from_plan(plan, 1, 4, deep_supervision=False).feature_map_voxels(t.patch_size) == ACDC_FULLRES_VOXELS
    assert UNetSpec.from_plan(plan, 1, 4).feature_map_voxels(t.patch_size) == ACDC_FULLRES_VOXELS + ACDC_LOWER_HEADS


def test_headroom_raises_the_batch_rounding_down():
    # budget at 8 GB: 560e6 voxels at batch 2 = 1.12e9 per batch; 1.12e9 / 310,481,920 = 3.61 -> batch 3
    p = plan_configuration([5, 1.5625, 1.5625], [18, 237, 208], 1e12, 1, 4)
    assert p.estimate == ACDC_FULLRES_VOXELS and p.budget == 1.12e9
    assert p.batch_size == 3


def test_shrink_steps_never_skip_valid_sizes():
    trace: list[str] = []
    p = plan_configuration([1, 1, 1], [256, 256, 256], 1e12, 1, 2, trace=trace)
    shrinks = [t for t in trace if "shrink" in t]
    assert shrinks[0].startswith("patch 256x256x256") and shrinks[0].endswith("shrink x by 32")  # 224, not 192
    assert p.batch_size == 2 and 2 * p.estimate <= p.budget
    assert p.patch_size == (128, 128, 128)


def test_budget_scales_with_gpu_memory():
    small = plan_configuration([1, 1, 1], [256, 256, 256], 1e12, 1, 2, gpu_memory_gb=4)
    large = plan_configuration([1, 1, 1], [256, 256, 256], 1e12, 1, 2, gpu_memory_gb=16)
    assert np.prod(small.patch_size) < np.prod(large.patch_size)
    assert large.budget == 4 * small.budget


def test_five_percent_cap_binds():
    trace: list[str] = []
    voxels = 40 * 64 * 64 * 100  # 100 cases of 40x64x64: 5% = 819200 voxels = 5 patches of 40x64x64
    p = plan_configuration([1, 1, 1], [40, 64, 64], voxels, 1, 2, trace=trace)
    assert p.patch_size == (40, 64, 64)
    assert p.batch_size == 5
    assert any("5%" in t for t in trace)
    tiny = plan_configuration([1, 1, 1], [40, 64, 64], 40 * 64 * 64 * 3, 1, 2)
    assert tiny.batch_size == 2  # never below 2


def test_2d_configuration_uses_in_plane_axes():
    plans, _ = plan_experiment(_acdc_like_fingerprint(), _spec(labels={"background": 0, "a": 1, "b": 2, "c": 3}, n=100))
    c = plans["configurations"]["2d"]
    assert c["spacing"] == [1.5625, 1.5625] and c["patch_size"] == [256, 224]
    assert len(c["median_shape"]) == 2 and all(len(k) == 2 for k in c["conv_kernel_sizes"])
    assert c["data_identifier"] == "2d"


# ---- cascade --------------------------------------------------------------------------------------

def test_lowres_step_grows_only_the_finer_axes_while_anisotropic():
    assert np.allclose(next_lowres_spacing(np.array([5.0, 1.0, 1.0]), 1.01), [5, 1.01, 1.01])
    assert np.allclose(next_lowres_spacing(np.array([2.0, 1.5, 1.5]), 1.01), [2.02, 1.515, 1.515])


def test_no_cascade_when_the_patch_covers_enough():
    full = plan_configuration([1, 1, 1], [160, 160, 160], 1e12, 1, 2)
    trace: list[str] = []
    assert plan_lowres(full, 10, 1, 2, trace=trace) is None
    assert "no low-res search" in trace[0]


def test_lowres_dropped_when_not_twice_smaller():
    full = plan_configuration([1, 1, 1], [220, 220, 220], 1e12, 1, 2)
    coverage = np.prod(full.patch_size) / 220**3
    assert 0.125 < coverage < 0.25
    trace: list[str] = []
    assert plan_lowres(full, 10, 1, 2, trace=trace) is None
    assert any("dropped" in t for t in trace)


# ---- normalisation --------------------------------------------------------------------------------

def test_ct_and_mri_channels():
    assert normalization_schemes({"0": "CT", "1": "T2"}, 0.9) == (["ct", "zscore"], [False, False])
    assert normalization_schemes({"0": "ct", "1": "MRI"}, 0.6) == (["ct", "zscore"], [False, True])
    assert normalization_schemes({"0": "MRI"}, 0.75) == (["zscore"], [False])
    assert normalization_schemes({"0": "MRI"}, 0.9, force_mask=True) == (["zscore"], [True])


def test_two_channel_plan_has_per_channel_normalisation():
    fp = _acdc_like_fingerprint()
    fp["median_relative_size_after_cropping"] = 0.5
    plans, trace = plan_experiment(fp, _spec(channels=("CT", "MRI"), n=100))
    for c in plans["configurations"].values():
        assert c["normalization"] == ["ct", "zscore"] and c["use_mask_for_norm"] == [False, True]
    assert any("inside the non-zero mask" in t for t in trace)


def test_ct_without_foreground_statistics_is_a_user_error():
    fp = _acdc_like_fingerprint()
    fp["foreground_intensity_properties_per_channel"]["0"] = dict.fromkeys(fp["foreground_intensity_properties_per_channel"]["0"])
    with pytest.raises(SegkitError, match="channel 0 is CT"):
        plan_experiment(fp, _spec(channels=("CT",)))
    plan_experiment(fp, _spec(channels=("MRI",)))  # z-score needs no dataset statistics


def _acdc_like_fingerprint():
    from tests.test_planning_golden import acdc_fingerprint

    return acdc_fingerprint()
