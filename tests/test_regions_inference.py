"""Region datasets after training, on hand-made arrays: region metrics, ensembles of sigmoid probabilities,
region-by-region postprocessing, the cascade's one-hot and the ignore label (expected values by hand)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from toolkit.dataset.labels import dataset_label_spec
from toolkit.evaluation.evaluate import evaluate_folder
from toolkit.evaluation.metrics import case_metrics
from toolkit.inference.cascade import load_previous_stage, previous_stage_onehot, save_next_stage
from toolkit.io.images import Geometry, read_image, write_image
from toolkit.postprocessing.rules import apply_postprocessing, decide_postprocessing
from toolkit.selection.ensemble import build_ensemble

GEO = Geometry((1.0, 1.0, 2.0), (0.0, 0.0, 0.0), (1, 0, 0, 0, 1, 0, 0, 0, 1))
BRATS = {"channel_names": {"0": "T1"}, "numTraining": 1, "file_ending": ".nii.gz",
         "labels": {"background": 0, "whole tumour": [1, 2, 3], "tumour core": [2, 3], "enhancing tumour": 3},
         "regions_class_order": [1, 2, 3]}


def test_region_metrics_use_membership_and_skip_ignored_voxels():
    ref = np.array([[0, 1, 1, 2, 2, 3, 4, 4]])
    pred = np.array([[1, 1, 2, 2, 3, 3, 3, 0]])
    labels = dict(BRATS["labels"], ignore=4)
    spec = dataset_label_spec({**BRATS, "labels": labels})
    m = case_metrics(pred, ref, list(spec.regions), (1.0, 1.0), ignore_label=spec.ignore, surface_metrics=False)
    assert list(m) == ["(1, 2, 3)", "(2, 3)", "3"]
    # whole: pred {0..5} (the two voxels on ignore dropped), ref {1..5}: TP 5, FP 1, FN 0
    assert (m["(1, 2, 3)"]["TP"], m["(1, 2, 3)"]["FP"], m["(1, 2, 3)"]["FN"]) == (5, 1, 0)
    # core: pred {2, 3, 4, 5}, ref {3, 4, 5}: TP 3, FP 1
    assert m["(2, 3)"]["Dice"] == pytest.approx(6 / 7)
    # enhancing: pred {4, 5}, ref {5}: TP 1, FP 1
    assert m["3"]["Dice"] == pytest.approx(2 / 3)


def test_evaluate_folder_reports_regions_by_key_and_name(tmp_path):
    ref = np.zeros((2, 4, 4), np.uint8)
    ref[0, :2, :2] = 1
    ref[0, 0, 0] = 3
    pred = ref.copy()
    pred[1, 3, 3] = 2  # a false core voxel, also false whole tumour
    write_image(ref, GEO, tmp_path / "ref" / "c.nii.gz")
    write_image(pred, GEO, tmp_path / "pred" / "c.nii.gz")
    summary = evaluate_folder(tmp_path / "pred", tmp_path / "ref", BRATS, surface_metrics=False)
    assert summary["labels"] == {"(1, 2, 3)": "whole tumour", "(2, 3)": "tumour core", "3": "enhancing tumour"}
    assert summary["mean"]["(1, 2, 3)"]["Dice"] == pytest.approx(8 / 9)
    assert summary["mean"]["(2, 3)"]["Dice"] == pytest.approx(2 / 3)
    assert summary["mean"]["3"]["Dice"] == pytest.approx(1.0)
    assert summary["foreground_mean"]["Dice"] == pytest.approx((8 / 9 + 2 / 3 + 1) / 3)


def test_ensemble_averages_sigmoid_probabilities_then_paints_regions(tmp_path):
    spec = dataset_label_spec(BRATS)
    shape = (1, 1, 4)
    a = np.zeros((3, *shape), np.float32)
    b = np.zeros((3, *shape), np.float32)
    a[:, 0, 0, 0], b[:, 0, 0, 0] = [0.9, 0.9, 0.9], [0.2, 0.2, 0.2]    # means 0.55: all regions -> 3
    a[:, 0, 0, 1], b[:, 0, 0, 1] = [0.9, 0.6, 0.1], [0.8, 0.3, 0.1]    # whole 0.85, core 0.45 -> 1
    a[:, 0, 0, 2], b[:, 0, 0, 2] = [0.4, 0.9, 0.0], [0.5, 0.9, 0.0]    # whole 0.45 but core 0.9 -> 2
    a[:, 0, 0, 3], b[:, 0, 0, 3] = [0.6, 0.0, 0.0], [0.39, 0.0, 0.0]   # whole 0.495 -> 0
    write_image(np.zeros(shape, np.uint8), GEO, tmp_path / "geo.nii.gz")
    for name, probs in (("a", a), ("b", b)):
        np.savez_compressed(tmp_path / f"{name}.npz", probabilities=probs)
    out = build_ensemble([{"c": tmp_path / "a.npz"}, {"c": tmp_path / "b.npz"}], {"c": tmp_path / "geo.nii.gz"},
                         tmp_path / "ens", ".nii.gz", spec)
    seg, _ = read_image(out["c"])
    assert seg.ravel().tolist() == [3, 1, 2, 0]


def _blobs() -> tuple[np.ndarray, np.ndarray]:
    """Reference: a tumour A (whole, core, enhancing inside) and a separate edema-only blob B.
    Prediction: the reference plus a small far enhancing blob C (a false core and enhancing region)."""
    ref = np.zeros((4, 20, 20), np.uint8)
    ref[0:4, 2:10, 2:10] = 1
    ref[1:3, 4:8, 4:8] = 2
    ref[1:3, 5:7, 5:7] = 3
    ref[0:4, 14:18, 14:18] = 1
    pred = ref.copy()
    pred[2, 18:20, 2:4] = 3
    return pred, ref


def test_region_postprocessing_is_decided_region_by_region_on_top_of_accepted_steps(tmp_path):
    pred, ref = _blobs()
    write_image(pred, GEO, tmp_path / "p.nii.gz")
    write_image(ref, GEO, tmp_path / "r.nii.gz")
    spec = dataset_label_spec(BRATS)
    result = decide_postprocessing([("c", tmp_path / "p.nii.gz", tmp_path / "r.nii.gz")], spec)
    # (a) the largest foreground component would drop B: whole tumour worse -> rejected;
    # (b) whole tumour: the same -> rejected; tumour core: removes C -> better -> accepted;
    #     enhancing tumour: C already gone, nothing changes -> rejected (it would be accepted alone)
    assert result["decision"] == {"keep_largest_foreground": False, "foreground_labels": [],
                                  "keep_largest_per_class": [[2, 3]]}
    assert [s["accepted"] for s in result["steps"]] == [False, False, True, False]
    assert result["steps"][2]["labels"] == [[2, 3]] and result["steps"][3]["labels"] == [3]
    assert result["dice_after"]["(2, 3)"] == pytest.approx(1.0)
    assert result["dice_before"]["(2, 3)"] == pytest.approx(2 * 32 / (32 + 36))
    out = apply_postprocessing(pred, json.loads(json.dumps(result["decision"])))
    assert np.array_equal(out, ref)


def test_cascade_onehot_of_regions_is_over_all_label_values(tmp_path):
    spec = dataset_label_spec(BRATS)
    probs = np.zeros((3, 1, 1, 4), np.float32)
    probs[:, 0, 0, 0] = [0.9, 0.9, 0.9]
    probs[:, 0, 0, 1] = [0.9, 0.2, 0.7]   # enhancing without core: painted last, still 3
    probs[:, 0, 0, 2] = [0.9, 0.1, 0.1]
    onehot = previous_stage_onehot(probs, (1, 1, 4), spec)
    assert onehot.shape == (4, 1, 1, 4)
    assert onehot.argmax(0).ravel().tolist() == [3, 3, 1, 0] and np.all(onehot.sum(0) == 1)
    assert torch.equal(previous_stage_onehot(torch.from_numpy(probs), (1, 1, 4), spec), torch.from_numpy(onehot))
    model = tmp_path / "models" / "3d_lowres"
    save_next_stage(model / "fold_0", "c", probs)
    (model / "dataset.json").write_text(json.dumps(BRATS))
    assert np.array_equal(load_previous_stage(model, "c", (1, 1, 4)), onehot)  # the label model from the folder
