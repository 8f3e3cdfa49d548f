"""Region and ignore-label training learns (slow): the nested-region phantom, the real BraTS cases with
BraTS regions, and the scribble phantom against fully labelled training, all scored by the trainer's
validation pseudo-Dice. Each run goes through `segkit plan` and `segkit preprocess`; the planned network
is narrowed (fewer features per stage, same topology) so that a few epochs fit the CPU test budget."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from toolkit.cli import cli
from toolkit.io.images import read_image, write_image
from toolkit.phantom_labels import SCRIBBLE_LABELS, make_region_phantom_dataset, make_scribble_phantom_dataset
from toolkit.training.options import TrainerOptions
from toolkit.training.setup import resolve_training
from toolkit.training.trainer import Trainer
from toolkit.workdir import WorkDir

pytestmark = pytest.mark.slow
SMALL = (40.0, 48.0, 48.0)  # the tests' small phantom field of view (tests/phantom_helpers.py)


def _prepare(ds: Path, work: Path, config: str = "2d", features: int = 8, patch: list[int] | None = None,
             plans_from: Path | None = None) -> None:
    """plan (or copy ``plans_from``'s plans with this dataset's labels) + preprocess ``config``, narrowed."""
    wd = WorkDir.for_dataset(work, ds)
    runner = CliRunner()
    if plans_from is None:
        assert runner.invoke(cli, ["plan", str(ds), "--work", str(work)]).exit_code == 0
    else:
        plans = json.loads(plans_from.read_text(encoding="utf-8"))
        plans["labels"] = json.loads((ds / "dataset.json").read_text(encoding="utf-8"))["labels"]
        wd.root.mkdir(parents=True, exist_ok=True)
        wd.plans.write_text(json.dumps(plans), encoding="utf-8")
    plans = json.loads(wd.plans.read_text(encoding="utf-8"))
    plan = plans["configurations"][config]
    plan["features_per_stage"] = [min(features * 2 ** i, 64) for i in range(len(plan["features_per_stage"]))]
    if patch is not None:
        plan["patch_size"] = patch
    wd.plans.write_text(json.dumps(plans), encoding="utf-8")
    result = runner.invoke(cli, ["preprocess", str(ds), "--work", str(work), "-c", config])
    assert result.exit_code == 0, result.output


def _train(ds: Path, work: Path, epochs: int, iters: int, config: str = "2d", **kw) -> list[list[float]]:
    opts = TrainerOptions(epochs=epochs, iters_per_epoch=iters, val_iters=4, num_workers=0, device="cpu",
                          final_validation=False, seed=7, **kw)
    trainer = Trainer(resolve_training(ds, work, config, 0), opts)
    trainer.run()
    return trainer.logs["pseudo_dice"]


def _validate_on(ds: Path, work: Path, fold_dir: Path, config: str = "2d") -> list[float]:
    """Pseudo-Dice of the model in ``fold_dir`` on ``ds``'s validation patches (its labels)."""
    import torch

    from toolkit.training.loss import pseudo_dice

    opts = TrainerOptions(epochs=1, iters_per_epoch=1, val_iters=8, num_workers=0, device="cpu",
                          final_validation=False, seed=7)
    trainer = Trainer(resolve_training(ds, work, config, 0), opts)
    trainer.network.load_state_dict(torch.load(fold_dir / "checkpoint_final.pt", weights_only=True)["network_weights"])
    with trainer._loaders() as (_, val):
        _, counts = trainer._validate(val)
    return pseudo_dice(counts)


def test_region_phantom_learns_the_whole_region(tmp_path):
    """96 iterations of the narrowed 2D network (measured on 2 shared cores: organ 0.75 at the last
    epoch, 0.81 at best; the nested lesion and core regions are still 0 after this budget: they need
    far longer training, left to the end-to-end tests)."""
    ds = make_region_phantom_dataset(tmp_path, n_train=6, n_test=0, seed=1, extent_mm=SMALL)
    (ds / "splits_final.json").write_text(json.dumps([{"train": [f"regions_{i:03d}" for i in range(4)],
                                                       "val": ["regions_004", "regions_005"]}]))
    _prepare(ds, tmp_path / "work")
    dice = _train(ds, tmp_path / "work", epochs=8, iters=12)
    print("region phantom pseudo-Dice per epoch (organ, lesion, core):", dice)
    assert len(dice[-1]) == 3  # one pseudo-Dice per region
    assert dice[-1][0] > 0.6


def _brats_to_canonical(src: Path, out: Path) -> Path:
    """The four developer cases in the canonical layout: FLAIR and T1c as channels, the BRATS 2015
    labels 0-4 kept, declared as the BraTS regions (docs/interfaces.md "Region labels and the ignore label")."""
    root = out / "Dataset015_BraTS2015"
    cases = sorted(p for split in ("train", "validation") for p in (src / split).iterdir() if p.is_dir())
    for case in cases:
        for channel, name in enumerate(("Flair_subtrMeanDivStd", "T1c_subtrMeanDivStd")):
            (root / "imagesTr").mkdir(parents=True, exist_ok=True)
            shutil.copy(case / f"{name}.nii.gz", root / "imagesTr" / f"{case.name}_{channel:04d}.nii.gz")
        label, geometry = read_image(case / "OTMultiClass.nii.gz")
        write_image(np.rint(label).astype(np.uint8), geometry, root / "labelsTr" / f"{case.name}.nii.gz")
    dataset = {"channel_names": {"0": "FLAIR", "1": "T1c"}, "numTraining": len(cases), "file_ending": ".nii.gz",
               "labels": {"background": 0, "whole tumour": [1, 2, 3, 4], "tumour core": [1, 3, 4],
                          "enhancing tumour": 4},
               "regions_class_order": [2, 1, 4]}
    (root / "dataset.json").write_text(json.dumps(dataset), encoding="utf-8")
    ids = [c.name for c in cases]
    (root / "splits_final.json").write_text(json.dumps([{"train": ids[:3], "val": ids[3:]}]), encoding="utf-8")
    return root


def test_real_brats_cases_train_with_brats_regions(shared_data, tmp_path):
    src = shared_data / "BraTS2015_deepmedic_examples" / "examples" / "dataForExamples" / "brats2015TrainingData"
    if not src.is_dir():
        pytest.skip(f"real data not available: {src} is absent")
    ds = _brats_to_canonical(src, tmp_path)
    _prepare(ds, tmp_path / "work", patch=[128, 128])
    dice = _train(ds, tmp_path / "work", epochs=4, iters=10, batch_size=4)
    print("BraTS pseudo-Dice per epoch (whole tumour, tumour core, enhancing tumour):", dice)
    # measured (2 shared cores, 158 s with preprocessing): whole tumour 0.13, 0.27, 0.44, 0.50 over the epochs
    assert len(dice[-1]) == 3 and max(d[0] for d in dice) > 0.3


def _full_copy(scribble: Path, out: Path) -> Path:
    """The scribble phantom's cases with their full labels (no ignore label), same case ids."""
    root = out / "Dataset903_ScribbleFull"
    shutil.copytree(scribble / "imagesTr", root / "imagesTr")
    shutil.copytree(scribble / "labelsTr_full", root / "labelsTr")
    meta = json.loads((scribble / "dataset.json").read_text(encoding="utf-8"))
    meta["labels"] = {k: v for k, v in SCRIBBLE_LABELS.items() if k != "ignore"}
    (root / "dataset.json").write_text(json.dumps(meta), encoding="utf-8")
    shutil.copy(scribble / "splits_final.json", root / "splits_final.json")
    return root


def test_scribble_training_scores_close_to_full_training_against_full_labels(tmp_path):
    scribble = make_scribble_phantom_dataset(tmp_path, n_train=6, n_test=0, seed=2, extent_mm=SMALL)
    (scribble / "splits_final.json").write_text(json.dumps([{"train": [f"scribble_{i:03d}" for i in range(4)],
                                                             "val": ["scribble_004", "scribble_005"]}]))
    full = _full_copy(scribble, tmp_path)
    _prepare(full, tmp_path / "work")
    _prepare(scribble, tmp_path / "work", plans_from=WorkDir.for_dataset(tmp_path / "work", full).plans)
    _train(full, tmp_path / "work", epochs=5, iters=10)
    _train(scribble, tmp_path / "work", epochs=5, iters=10)
    models = {name: WorkDir.for_dataset(tmp_path / "work", ds).model("2d", 0) for name, ds in
              (("full", full), ("scribble", scribble))}
    scores = {name: _validate_on(full, tmp_path / "work", fold) for name, fold in models.items()}
    print("pseudo-Dice against the full labels (organ, lesion):", scores)
    # measured (2 shared cores, 50 iterations each): organ 0.85 from scribbles vs 0.82 fully labelled;
    # the small lesion is 0 for both after this budget
    assert scores["full"][0] > 0.6 and scores["scribble"][0] > scores["full"][0] - 0.15
