"""Largest-component postprocessing: the components themselves and the two-step decision rule."""

from __future__ import annotations

import numpy as np
import pytest

from toolkit.evaluation import dice_per_class
from toolkit.io.images import Geometry, write_image
from toolkit.postprocessing import (
    NO_POSTPROCESSING,
    apply_postprocessing,
    choose_postprocessing,
    decide_postprocessing,
    keep_largest,
    largest_component,
)

GEO = Geometry((1.0, 1.0, 2.0), (0.0, 0.0, 0.0), (1, 0, 0, 0, 1, 0, 0, 0, 1))


@pytest.mark.parametrize("backend", ["cc3d", "scipy"])
def test_largest_component_full_connectivity_and_ties(backend):
    mask = np.zeros((6, 6, 6), bool)
    mask[0:2, 0:2, 0:2] = True          # 8 voxels
    mask[2, 2, 2] = True                # touches the cube only at a corner: same component (26-conn.)
    mask[4:6, 4:6, 5] = True            # 4 voxels, separate
    out = largest_component(mask, backend)
    assert out.sum() == 9 and not out[4:6, 4:6, 5].any()
    tie = np.zeros((5, 5), bool)
    tie[0, 0:2] = True
    tie[4, 3:5] = True
    assert largest_component(tie, backend).sum() == 4          # tied largest components are all kept
    assert not largest_component(np.zeros((3, 3, 3), bool), backend).any()


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_cc3d_matches_scipy(seed):
    mask = np.random.default_rng(seed).random((20, 30, 25)) < 0.25
    assert np.array_equal(largest_component(mask, "cc3d"), largest_component(mask, "scipy"))


def test_keep_largest_on_label_map_leaves_input_untouched():
    seg = np.zeros((5, 8, 8), np.uint8)
    seg[1:4, 1:4, 1:4] = 1
    seg[1:4, 4, 1:4] = 2                # touches class 1: part of the union's largest component
    seg[0, 7, 7] = 2                    # isolated
    before = seg.copy()
    out = keep_largest(seg, [1, 2])
    assert np.array_equal(seg, before)
    assert out[0, 7, 7] == 0 and (out == 2).sum() == 9 and (out == 1).sum() == 27
    only2 = keep_largest(seg, [2])
    assert only2[0, 7, 7] == 0 and (only2 == 1).sum() == 27


def _scenario(rng_shift: int):
    """One case: organ + a spurious organ blob; lesion A touching the organ, a small true lesion B far away."""
    ref = np.zeros((12, 16, 16), np.uint8)
    ref[2:6, 2:6, 2:6] = 1                               # organ, 64 voxels
    ref[2:5, 6:9, 2:5] = 2                               # lesion A, 27 voxels, touching the organ
    ref[10, 13 - rng_shift, 13] = 2                      # lesion B, 1 voxel, isolated
    pred = ref.copy()
    pred[8:11, 2:5, 10:13] = 1                           # spurious organ blob, 27 voxels, isolated
    return pred, ref


def _write_cases(tmp_path, arrays):
    cases = []
    for i, (pred, ref) in enumerate(arrays):
        p, r = tmp_path / "pred" / f"c{i}.nii.gz", tmp_path / "ref" / f"c{i}.nii.gz"
        write_image(pred, GEO, p)
        write_image(ref, GEO, r)
        cases.append((f"c{i}", p, r))
    return cases


def test_spurious_component_removed_but_not_a_class_that_would_get_worse(tmp_path):
    arrays = [_scenario(0), _scenario(2)]
    result = decide_postprocessing(_write_cases(tmp_path, arrays), [1, 2])
    a, b1, b2 = result["steps"]
    # (a) raises the foreground mean (organ 0.83 -> 1.0, lesion 1.0 -> 0.98) but lesion gets worse: rejected
    assert a["foreground_mean_after"] > a["foreground_mean_before"]
    assert a["dice_after"]["2"] < a["dice_before"]["2"]
    assert not a["accepted"]
    # (b) organ: the spurious blob goes; lesion: removing true lesion B would hurt, so it stays
    assert b1["labels"] == [1] and b1["accepted"]
    assert b2["labels"] == [2] and not b2["accepted"]
    assert result["decision"] == {"keep_largest_foreground": False, "foreground_labels": [],
                                  "keep_largest_per_class": [1]}
    organ_before = 2 * 64 / (64 + 91)
    assert result["dice_before"]["1"] == pytest.approx(organ_before)
    assert result["dice_after"] == {"1": pytest.approx(1.0), "2": pytest.approx(1.0)}
    for pred, ref in arrays:
        post = apply_postprocessing(pred, result["decision"])
        assert dice_per_class(post, ref, [1, 2]) == {1: pytest.approx(1.0), 2: pytest.approx(1.0)}


def test_union_step_accepted_when_everything_improves(tmp_path):
    pred, ref = _scenario(0)
    ref[ref == 2] = 0
    pred[pred == 2] = 0
    pred[0, 15, 15] = 2                                  # a spurious lesion where there is none
    result = decide_postprocessing(_write_cases(tmp_path, [(pred, ref)]), [1, 2])
    a = result["steps"][0]
    assert a["accepted"]
    # the lesion class vanished in a case without lesion: empty-both, no longer counted (was Dice 0)
    assert a["dice_before"]["2"] == 0.0 and a["dice_after"]["2"] is None
    assert result["decision"]["keep_largest_foreground"] and result["decision"]["foreground_labels"] == [1, 2]
    post = apply_postprocessing(pred, result["decision"])
    assert np.array_equal(post, ref)


def test_nothing_applied_when_nothing_improves(tmp_path):
    seg = np.zeros((6, 6, 6), np.uint8)
    seg[1:3, 1:3, 1:3] = 1
    seg[4:6, 4:6, 4:6] = 1                               # two true components of equal size
    result = decide_postprocessing(_write_cases(tmp_path, [(seg, seg)]), [1])
    assert result["decision"]["keep_largest_foreground"] is False
    assert len(result["steps"]) == 1                     # one class: no per-class step
    assert np.array_equal(apply_postprocessing(seg, NO_POSTPROCESSING), seg)


def test_choose_postprocessing_strict_improvement_and_none():
    row = {"case": "x", "base": {1: 0.5, 2: None}, "union": {1: 0.5, 2: None},
           "class_from_base": {1: 0.5, 2: None}, "class_from_union": {1: 0.5, 2: None}}
    decision, steps = choose_postprocessing([row], [1, 2])
    assert decision == {"keep_largest_foreground": False, "foreground_labels": [], "keep_largest_per_class": []}
    assert [s["accepted"] for s in steps] == [False, False, False]
