"""Golden tests: the configurations of docs/method.md 3 (from the paper's tables).

Fingerprints are built so that their per-case spacings/shapes reproduce the published medians and
percentiles. Tolerances (docs/method.md 3): patch within one divisibility step per axis, batch within a
factor 1.5; spacing rules and topology exact.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from toolkit.dataset import DatasetSpec
from toolkit.planning import plan_experiment

STATS = {"mean": 0.0, "median": 0.0, "std": 1.0, "min": -5.0, "max": 5.0, "percentile_00_5": -3.0,
         "percentile_99_5": 3.0}


def _fp(spacings, shapes):
    return {
        "spacings": spacings,
        "shapes_after_crop": shapes,
        "median_relative_size_after_cropping": 1.0,
        "foreground_intensity_properties_per_channel": {str(c): dict(STATS) for c in range(2)},
    }


def acdc_fingerprint():
    """11 cases: z spacing median 10, 10th percentile 5; raw median 9x237x256, resampled 18x237x208."""
    sp_xy = [1.5625] * 6 + [1.25] * 2 + [1.8] * 3
    xs = [208, 208, 208, 208, 256, 256] + [256] * 5
    sp_z = [5, 5] + [10] * 9
    zs = [18, 18] + [9] * 9
    return _fp([[z, s, s] for z, s in zip(sp_z, sp_xy, strict=True)], [[n, 237, x] for n, x in zip(zs, xs, strict=True)])


def lits_fingerprint():
    """5 cases: median 432x512x512 at 1x0.77x0.77; median after resampling to 1 mm z is 482."""
    cases = [(0.7, 600), (1.0, 432), (1.0, 482), (2.5, 200), (5.0, 100)]
    return _fp([[z, 0.77, 0.77] for z, _ in cases], [[n, 512, 512] for _, n in cases])


def _spec(name, channel, labels, n):
    return DatasetSpec(Path(name), {"0": channel}, labels, n, ".nii.gz", {})


ACDC = _spec("Dataset027_ACDC", "cineMRI", {"background": 0, "RV": 1, "MLV": 2, "LVC": 3}, 100)
LITS = _spec("Dataset029_LiTS", "CT", {"background": 0, "liver": 1, "tumor": 2}, 131)


def check_patch(config, expected):
    div = [2**n for n in config["num_pool_per_axis"]]
    for got, want, d in zip(config["patch_size"], expected, div, strict=True):
        assert abs(got - want) <= d, (config["patch_size"], expected)


def check_batch(config, expected):
    assert expected / 1.5 <= config["batch_size"] <= expected * 1.5


def test_fingerprints_reproduce_the_published_medians():
    for fp, med in ((acdc_fingerprint(), [9, 237, 256]), (lits_fingerprint(), [432, 512, 512])):
        assert list(np.median(fp["shapes_after_crop"], axis=0)) == med
    assert np.percentile([s[0] for s in acdc_fingerprint()["spacings"]], 10) == 5


def test_acdc():
    plans, trace = plan_experiment(acdc_fingerprint(), ACDC)
    c2, c3 = plans["configurations"]["2d"], plans["configurations"]["3d_fullres"]
    assert c2["spacing"] == [1.5625, 1.5625] and c2["median_shape"] == [237, 208]
    check_patch(c2, [256, 224])
    assert c3["spacing"] == [5.0, 1.5625, 1.5625] and c3["median_shape"] == [18, 237, 208]
    check_patch(c3, [20, 256, 224])
    check_batch(c3, 3)
    assert c3["pool_strides"] == [[1, 2, 2], [2, 2, 2], [2, 2, 2], [1, 2, 2], [1, 2, 2]]
    assert c3["conv_kernel_sizes"] == [[1, 3, 3]] + [[3, 3, 3]] * 5
    assert "3d_lowres" not in plans["configurations"] and "3d_cascade_fullres" not in plans["configurations"]
    assert any("10th percentile" in t for t in trace)


def test_lits():
    plans, trace = plan_experiment(lits_fingerprint(), LITS)
    cfg = plans["configurations"]
    assert cfg["2d"]["spacing"] == [0.77, 0.77] and cfg["2d"]["median_shape"] == [512, 512]
    check_patch(cfg["2d"], [512, 512])
    check_batch(cfg["2d"], 12)
    full = cfg["3d_fullres"]
    assert full["spacing"] == [1.0, 0.77, 0.77] and full["median_shape"] == [482, 512, 512]
    check_patch(full, [128, 128, 128])
    check_batch(full, 2)
    assert full["pool_strides"] == [[2, 2, 2]] * 5 and full["conv_kernel_sizes"] == [[3, 3, 3]] * 6
    low = cfg["3d_lowres"]
    # the paper searched in 1% steps, nnU-Net v2 (and segkit) in 3% steps: within one step of the paper
    # (tests/test_planning_presets.py checks the exact nnunetv2 2.8.1 numbers on this fingerprint)
    assert low["spacing"] == pytest.approx([2.47, 1.9, 1.9], rel=0.03)
    assert low["median_shape"] == pytest.approx([195, 207, 207], rel=0.03)
    check_patch(low, [128, 128, 128])
    check_batch(low, 2)
    casc = cfg["3d_cascade_fullres"]
    assert casc["previous_stage"] == "3d_lowres" and casc["data_identifier"] == "3d_fullres"
    assert casc["patch_size"] == full["patch_size"] and low["next_stage"] == "3d_cascade_fullres"
    assert cfg["3d_fullres"]["normalization"] == ["ct"]
    assert any(t.startswith("cascade: fullres patch covers 1.7% < 25%") for t in trace)
