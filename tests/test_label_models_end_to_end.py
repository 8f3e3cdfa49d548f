"""Region labels and the ignore label end to end through the CLI (slow: about 2.5 + 4.5 minutes on 2
shared cores).

Regions: the nested-region phantom (toolkit/phantom_labels.py: organ [1, 2, 3] holding lesion [2, 3] holding core 3,
``regions_class_order`` [1, 2, 3]) goes through `segkit run` (plan, preprocess, train 3d_fullres with one
sigmoid output per region) and `segkit predict` on its held-out cases. Every region must be learned, scored
here by plain counting against the reference label maps with the regions' own definitions, and the
written label maps must hold only the painted values of ``regions_class_order``.

Ignore label: the scribble phantom (the demo phantom's images; training labels only thin crosses, every
other voxel ``ignore``) and the same cases fully labelled are each trained with the same options and
iterations, and both models predict the held-out cases, scored against their full reference labels.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from toolkit.cli import cli
from toolkit.io.images import read_image
from toolkit.phantom_labels import (
    REGION_LABELS,
    SCRIBBLE_LABELS,
    make_region_phantom_dataset,
    make_scribble_phantom_dataset,
)

pytestmark = pytest.mark.slow
REGIONS = {"organ": (1, 2, 3), "lesion": (2, 3), "core": (3,)}
# measured (2 shared cores, seed 12345, 4 x 10 iterations): organ 0.91-0.95, lesion 0.75-0.84, core 0.65-0.71
FLOORS = {"organ": 0.8, "lesion": 0.6, "core": 0.5}


def _region_dice(pred: np.ndarray, ref: np.ndarray, values: tuple[int, ...]) -> float:
    p, r = np.isin(pred, values), np.isin(ref, values)
    return float(2 * (p & r).sum() / (p.sum() + r.sum()))


def _two_fold_split(ds, prefix: str) -> None:
    (ds / "splits_final.json").write_text(json.dumps([
        {"train": [f"{prefix}_{i:03d}" for i in range(4) if i % 2 != k],
         "val": [f"{prefix}_{i:03d}" for i in range(4) if i % 2 == k]} for k in range(2)]))


def _run_and_predict(ds, images, work, pred):
    """`segkit run -c 3d_fullres -f 0` (4 x 10 iterations, no selection), then `segkit predict` ``images``."""
    runner = CliRunner()
    result = runner.invoke(cli, ["run", str(ds), "--work", str(work), "-c", "3d_fullres", "-f", "0", "--epochs", "4",
                                 "--iters-per-epoch", "10", "--val-iters", "2", "--num-workers", "0",
                                 "--device", "cpu", "--no-select"])
    assert result.exit_code == 0, result.output
    model = work / ds.name / "models" / "3d_fullres"
    result = runner.invoke(cli, ["predict", "-m", str(model), "-i", str(images), "-o", str(pred), "-f", "0"])
    assert result.exit_code == 0, result.output
    return model


@pytest.fixture(scope="module")
def region_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("regions")
    ds = make_region_phantom_dataset(root / "raw", n_train=4, n_test=2, seed=1, extent_mm=(40.0, 48.0, 48.0))
    _two_fold_split(ds, "regions")
    model = _run_and_predict(ds, ds / "imagesTs", root / "work", root / "pred")
    runner = CliRunner()
    result = runner.invoke(cli, ["export", str(ds), "--work", str(root / "work"), "-c", "3d_fullres", "--folds", "0",
                                 "-o", str(root / "bundle")])
    assert result.exit_code == 0, result.output
    result = runner.invoke(cli, ["predict", "-m", str(root / "bundle"), "-i", str(ds / "imagesTs"),
                                 "-o", str(root / "pred_bundle")])
    assert result.exit_code == 0, result.output
    return ds, model, root / "pred"


def test_network_has_one_sigmoid_output_per_region(region_run):
    _, model, _ = region_run
    ckpt = torch.load(model / "fold_0" / "checkpoint_final.pt", map_location="cpu", weights_only=True)
    assert ckpt["spec"]["num_classes"] == 3  # organ, lesion, core: no background channel
    assert ckpt["has_regions"] and list(ckpt["regions_class_order"]) == [1, 2, 3]


def test_every_region_is_learned_on_held_out_cases(region_run):
    ds, _, pred_dir = region_run
    preds = sorted(pred_dir.glob("*.nii.gz"))
    assert [p.name for p in preds] == ["regions_004.nii.gz", "regions_005.nii.gz"]
    for path in preds:
        pred, pred_geo = read_image(path)
        ref, ref_geo = read_image(ds / "labelsTs" / path.name)
        assert not pred_geo.differs_from(ref_geo)
        # painted in regions_class_order: organ 1, lesion 2 over it, core 3 over both; nothing else
        assert set(np.unique(pred).tolist()) <= {0, 1, 2, 3}
        scores = {name: _region_dice(pred, ref, values) for name, values in REGIONS.items()}
        print(path.name, scores)
        assert all(scores[name] > FLOORS[name] for name in REGIONS), scores


def test_exported_bundle_predicts_the_region_model_identically(region_run):
    """The bundle (dataset.json with the regions inside) predicts what the model folder predicted."""
    _, _, pred_dir = region_run
    for path in sorted(pred_dir.glob("*.nii.gz")):
        ours, geo = read_image(path)
        bundled, bundled_geo = read_image(pred_dir.parent / "pred_bundle" / path.name)
        assert np.array_equal(ours, bundled) and not geo.differs_from(bundled_geo)


def test_regions_follow_the_dataset_declaration():
    assert {k: tuple(v) if isinstance(v, list) else (v,) for k, v in REGION_LABELS.items() if k != "background"} \
        == REGIONS


# -- ignore label ---------------------------------------------------------------------------------------
# measured (2 shared cores, 4 x 10 iterations each) against the full reference of the two held-out cases:
# organ 0.975 / 0.984 from scribbles vs 0.955 / 0.976 fully labelled; lesion 0.52 / 0.47 from scribbles,
# 0.0 fully labelled (the small lesion is not found yet after this budget when every voxel counts)
ORGAN_MARGIN = 0.05


def test_scribbles_with_ignore_score_like_full_labels_against_the_full_reference(tmp_path):
    scribble = make_scribble_phantom_dataset(tmp_path / "raw", n_train=4, n_test=2, seed=1,
                                             extent_mm=(40.0, 48.0, 48.0))
    full = tmp_path / "raw" / "Dataset903_ScribbleFull"
    shutil.copytree(scribble / "imagesTr", full / "imagesTr")
    shutil.copytree(scribble / "labelsTr_full", full / "labelsTr")
    meta = json.loads((scribble / "dataset.json").read_text(encoding="utf-8"))
    meta["labels"] = {k: v for k, v in SCRIBBLE_LABELS.items() if k != "ignore"}
    (full / "dataset.json").write_text(json.dumps(meta), encoding="utf-8")
    for ds in (scribble, full):
        _two_fold_split(ds, "scribble")
    scores = {}
    for name, ds in (("full", full), ("scribble", scribble)):
        _run_and_predict(ds, scribble / "imagesTs", tmp_path / "work", tmp_path / f"pred_{name}")
        for path in sorted((tmp_path / f"pred_{name}").glob("*.nii.gz")):
            pred, _ = read_image(path)
            ref, _ = read_image(scribble / "labelsTs" / path.name)
            assert SCRIBBLE_LABELS["ignore"] not in np.unique(pred)  # never predicted
            scores.setdefault(name, []).append([_region_dice(pred, ref, (v,)) for v in (1, 2)])
    print("Dice against the full reference (organ, lesion) per case:", scores)
    full_s, scrib_s = np.asarray(scores["full"]), np.asarray(scores["scribble"])
    assert full_s.shape == scrib_s.shape == (2, 2)
    assert full_s[:, 0].mean() > 0.8 and scrib_s[:, 0].mean() > 0.8
    assert scrib_s[:, 0].mean() > full_s[:, 0].mean() - ORGAN_MARGIN
    assert scrib_s[:, 1].mean() >= full_s[:, 1].mean() - 0.1
