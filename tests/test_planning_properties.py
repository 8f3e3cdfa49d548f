"""Property tests: every plan respects divisibility, batch >= 2, the memory budget, consistent list
lengths, and is JSON-serialisable and deterministic."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from toolkit.dataset import DatasetSpec
from toolkit.network.architecture import UNetSpec
from toolkit.planning import plan_experiment

STATS = {"mean": 1.0, "median": 1.0, "std": 2.0, "min": -3.0, "max": 5.0, "percentile_00_5": -2.0,
         "percentile_99_5": 4.0}


@st.composite
def fingerprints(draw):
    n = draw(st.integers(1, 6))
    base_sp = [draw(st.floats(0.3, 6.0)) for _ in range(3)]
    base_sh = [draw(st.integers(4, 400)) for _ in range(3)]
    jitter = st.floats(0.7, 1.4)
    spacings = [[s * draw(jitter) for s in base_sp] for _ in range(n)]
    shapes = [[max(1, int(s * draw(jitter))) for s in base_sh] for _ in range(n)]
    return {
        "spacings": spacings,
        "shapes_after_crop": shapes,
        "median_relative_size_after_cropping": draw(st.floats(0.1, 1.0)),
        "foreground_intensity_properties_per_channel": {str(c): STATS for c in range(3)},
    }


@st.composite
def specs(draw):
    channels = draw(st.lists(st.sampled_from(["CT", "MRI", "T2", "ADC"]), min_size=1, max_size=3))
    n_fg = draw(st.integers(1, 4))
    labels = {"background": 0} | {f"c{i}": i for i in range(1, n_fg + 1)}
    return DatasetSpec(Path("Dataset900_Prop"), {str(i): c for i, c in enumerate(channels)}, labels,
                       draw(st.integers(1, 300)), ".nii.gz", {})


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fp=fingerprints(), spec=specs(), gb=st.floats(2.0, 48.0))
def test_plans_are_valid(fp, spec, gb):
    plans, trace = plan_experiment(fp, spec, gb)
    assert trace and all(isinstance(t, str) for t in trace)
    configs = plans["configurations"]
    assert "2d" in configs
    for name, c in configs.items():
        ndim = 2 if name == "2d" else 3
        assert len(c["spacing"]) == len(c["patch_size"]) == len(c["median_shape"]) == ndim
        assert c["batch_size"] >= 2
        strides, kernels = c["pool_strides"], c["conv_kernel_sizes"]
        assert len(kernels) == len(strides) + 1 == len(c["features_per_stage"])
        assert all(len(s) == ndim and set(s) <= {1, 2} for s in strides)
        assert all(len(k) == ndim and set(k) <= {1, 3} for k in kernels)
        for axis in range(ndim):
            pools = sum(s[axis] == 2 for s in strides)
            assert c["patch_size"][axis] % 2**pools == 0
            assert c["patch_size"][axis] // 2**pools >= 4 or pools == 0
        spec_net = UNetSpec.from_plan(c, spec.num_channels, spec.num_classes, deep_supervision=False)
        est = spec_net.feature_map_voxels(c["patch_size"])
        assert est == c["estimated_feature_map_voxels"]
        # docs/method.md 1.3: 560e6 voxels at batch 2 (3D) / 85e6 at batch 12 (2D) for 8 GB, linear in the GPU memory
        budget = (560e6 * 2 if ndim == 3 else 85e6 * 12) * gb / 8
        assert c["memory_budget_voxels"] == pytest.approx(budget, rel=1e-9)
        assert c["batch_size"] * est <= budget * (1 + 1e-12)
        assert len(c["normalization"]) == len(c["use_mask_for_norm"]) == spec.num_channels
    if "3d_lowres" in configs:
        assert all(lo >= fu for lo, fu in zip(configs["3d_lowres"]["spacing"], configs["3d_fullres"]["spacing"], strict=True))
        assert configs["3d_cascade_fullres"]["previous_stage"] == "3d_lowres"
    assert json.loads(json.dumps(plans)) == plans
    assert plan_experiment(fp, spec, gb) == (plans, trace)
