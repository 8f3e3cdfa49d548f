"""Region training learns on real data (slow): the real BraTS 2015 cases with the BraTS regions, scored by
the trainer's validation pseudo-Dice. The run goes through `segkit plan` and `segkit preprocess`; the
planned network is narrowed (fewer features per stage, same topology) so that a few epochs fit the CPU
test budget. The phantoms (nested regions; scribbles + ignore against full labels) are trained and
predicted end to end in tests/test_label_models_end_to_end.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import brats_to_canonical

from toolkit.cli import cli
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


def test_real_brats_cases_train_with_brats_regions(shared_data, tmp_path):
    src = shared_data / "BraTS2015_deepmedic_examples" / "examples" / "dataForExamples" / "brats2015TrainingData"
    if not src.is_dir():
        pytest.skip(f"real data not available: {src} is absent")
    ds = brats_to_canonical(src, tmp_path)
    _prepare(ds, tmp_path / "work", patch=[128, 128])
    dice = _train(ds, tmp_path / "work", epochs=4, iters=10, batch_size=4)
    print("BraTS pseudo-Dice per epoch (whole tumour, tumour core, enhancing tumour):", dice)
    # measured (2 cores): whole tumour 0.13, 0.27, 0.44, 0.50 over the four epochs (about 15 s on quiet cores)
    assert len(dice[-1]) == 3 and max(d[0] for d in dice) > 0.3
