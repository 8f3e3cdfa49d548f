"""The 3D cascade trained end to end on a tiny phantom (CPU, a few iterations per fold).

A phantom with a large field of view, planned under a tiny GPU budget, gets a full-res patch that covers
under 12.5% of its median image, so the planner adds 3d_lowres and 3d_cascade_fullres. `segkit run -c
3d_cascade_fullres` must then train the low-res stage on every fold first, have each low-res fold predict
its validation cases for the next stage, train the cascade on those one-hot masks as extra channels, score
it in selection, and the exported bundle must predict test images (low-res stage first) on their exact
geometry. Machinery, not learning: tests/test_learning_hippocampus.py checks learning.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from toolkit.cli import cli
from toolkit.io.images import read_image
from toolkit.phantom import make_phantom_dataset

TINY = ["--epochs", "1", "--iters-per-epoch", "2", "--val-iters", "1", "--num-workers", "0", "--device", "cpu",
        "-j", "1", "--gpu-memory-gb", "0.05"]


pytestmark = pytest.mark.slow  # about 4 minutes on 2 free cores


@pytest.fixture(scope="module")
def cascade_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("cascade")
    ds = make_phantom_dataset(root / "raw", n_train=4, n_test=1, seed=5, extent_mm=(45.0, 90.0, 90.0))
    (ds / "splits_final.json").write_text(json.dumps([
        {"train": [f"phantom_{i:03d}" for i in range(4) if i % 2 != k],
         "val": [f"phantom_{i:03d}" for i in range(4) if i % 2 == k]} for k in range(2)]))
    work = root / "work"
    result = CliRunner().invoke(cli, ["run", str(ds), "--work", str(work), "-c", "3d_cascade_fullres", *TINY])
    assert result.exit_code == 0, result.output
    return ds, work / ds.name, result.output


def test_small_budget_on_a_large_field_of_view_plans_the_cascade(cascade_run):
    _, wd, _ = cascade_run
    configs = json.loads((wd / "plans.json").read_text(encoding="utf-8"))["configurations"]
    assert configs["3d_cascade_fullres"]["previous_stage"] == "3d_lowres"
    low, full = configs["3d_lowres"], configs["3d_fullres"]
    assert all(lo >= fu for lo, fu in zip(low["spacing"], full["spacing"], strict=True))
    assert np.prod(low["median_shape"]) < np.prod(full["median_shape"])


def test_lowres_folds_feed_the_cascade_its_validation_predictions(cascade_run):
    ds, wd, _ = cascade_run
    for k, cases in ((0, ["phantom_000", "phantom_002"]), (1, ["phantom_001", "phantom_003"])):
        fold = wd / "models" / "3d_lowres" / f"fold_{k}"
        assert (fold / "checkpoint_final.pt").is_file()
        for case in cases:  # each training case is a validation case of exactly one low-res fold
            with np.load(fold / "validation" / "next_stage" / f"{case}.npz") as npz:
                probs = npz["probabilities"]
            assert probs.shape[0] == 3 and np.allclose(probs.astype(np.float32).sum(0), 1, atol=1e-2)
    materialized = sorted(p.stem for p in (wd / "predicted_next_stage" / "3d_lowres").glob("*.npy"))
    assert materialized == [f"phantom_{i:03d}" for i in range(4)]


def test_cascade_trained_with_previous_stage_channels_and_was_selected_among(cascade_run):
    _, wd, output = cascade_run
    for k in (0, 1):
        ckpt = torch.load(wd / "models" / "3d_cascade_fullres" / f"fold_{k}" / "checkpoint_final.pt",
                          map_location="cpu", weights_only=True)
        assert ckpt["spec"]["in_channels"] == 1 + 3  # image + one-hot of background, organ, lesion
        summary = json.loads((wd / "models" / "3d_cascade_fullres" / f"fold_{k}" / "validation" / "summary.json")
                             .read_text(encoding="utf-8"))
        assert len(summary["per_case"]) == 2
    selection = json.loads((wd / "selection.json").read_text(encoding="utf-8"))
    assert {"3d_lowres", "3d_cascade_fullres"} <= {c["name"] for c in selection["candidates"]}
    assert "3d_cascade_fullres needs 3d_lowres trained on the same folds: training it too" in output
    assert output.index("[train] 3d_lowres fold 1") < output.index("[train] 3d_cascade_fullres fold 0")


def test_cascade_model_predicts_low_res_first_on_exact_geometry(cascade_run, tmp_path):
    ds, wd, _ = cascade_run
    out = tmp_path / "pred"
    result = CliRunner().invoke(cli, ["predict", "-m", str(wd / "models" / "3d_cascade_fullres"), "-i",
                                      str(ds / "imagesTs"), "-o", str(out), "--device", "cpu", "--no-tta"])
    assert result.exit_code == 0, result.output
    _assert_on_input_grid(ds, out)


def test_exported_bundle_carries_the_stages_its_winner_needs(cascade_run, tmp_path):
    ds, wd, _ = cascade_run
    bundle, out = tmp_path / "bundle", tmp_path / "pred"
    runner = CliRunner()
    result = runner.invoke(cli, ["export", str(ds), "--work", str(wd.parent), "-o", str(bundle)])
    assert result.exit_code == 0, result.output
    winner = json.loads((bundle / "manifest.json").read_text(encoding="utf-8"))["configurations"]
    stages = {p.name for p in (bundle / "models").iterdir()}
    assert stages == set(winner) | ({"3d_lowres"} if "3d_cascade_fullres" in winner else set())
    result = runner.invoke(cli, ["predict", "-m", str(bundle), "-i", str(ds / "imagesTs"), "-o", str(out),
                                 "--device", "cpu", "--no-tta"])
    assert result.exit_code == 0, result.output
    _assert_on_input_grid(ds, out)


def test_cascade_bundle_predicts_what_its_model_folders_predict(cascade_run, tmp_path):
    """A few iterations learn nothing, so no Dice floor here (the demo and pipeline tests have one); instead
    the bundle's two-stage prediction must equal, voxel for voxel, the model folder's (low-res stage run
    from the work directory) with the bundle's own postprocessing applied: a bundle that lost a stage,
    mixed up folds or wrote an all-background map would differ."""
    from toolkit.postprocessing.rules import apply_postprocessing

    ds, wd, _ = cascade_run
    runner, bundle = CliRunner(), tmp_path / "bundle"
    result = runner.invoke(cli, ["export", str(ds), "--work", str(wd.parent), "-o", str(bundle),
                                 "-c", "3d_cascade_fullres"])
    assert result.exit_code == 0, result.output
    assert {p.name for p in (bundle / "models").iterdir()} == {"3d_cascade_fullres", "3d_lowres"}
    preds = {}
    for name, model in (("bundle", bundle), ("folder", wd / "models" / "3d_cascade_fullres")):
        result = runner.invoke(cli, ["predict", "-m", str(model), "-i", str(ds / "imagesTs"),
                                     "-o", str(tmp_path / name), "--device", "cpu", "--no-tta"])
        assert result.exit_code == 0, result.output
        preds[name] = _assert_on_input_grid(ds, tmp_path / name)
    decision = json.loads((bundle / "postprocessing.json").read_text(encoding="utf-8"))
    assert np.array_equal(preds["bundle"], apply_postprocessing(preds["folder"], decision))


def _assert_on_input_grid(ds, out) -> np.ndarray:
    img = next((ds / "imagesTs").glob("*_0000.nii.gz"))
    pred, geo = read_image(out / img.name.replace("_0000.nii.gz", ".nii.gz"))
    ref, ref_geo = read_image(img)
    assert pred.shape == ref.shape and geo == ref_geo and set(np.unique(pred)) <= {0, 1, 2}
    return pred
