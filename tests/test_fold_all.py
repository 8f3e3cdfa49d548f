"""Fold "all": train on every case (no validation), predict/export with it, selection ignores it.

One tiny phantom run (3d_fullres, folds 0 and all, a few iterations) is shared by the tests; they check
the machinery, not learning.
"""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner
from phantom_helpers import tiny_phantom_two_folds

from toolkit.cli import cli
from toolkit.dataset.folds import NO_VALIDATION, parse_fold
from toolkit.dataset.splits import make_splits
from toolkit.errors import SegkitError
from toolkit.phantom import make_phantom_dataset

pytestmark = pytest.mark.slow  # trains fold all through the CLI several times: minutes

TINY = ["--epochs", "1", "--iters-per-epoch", "2", "--val-iters", "1", "--num-workers", "0", "--device", "cpu"]
CASES = [f"phantom_{i:03d}" for i in range(4)]


@pytest.fixture(scope="module")
def fold_all_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("foldall")
    ds, work = tiny_phantom_two_folds(root / "raw", n_train=4), root / "work"
    result = CliRunner().invoke(cli, ["run", str(ds), "--work", str(work), "-c", "3d_fullres", "-f", "0", "-f", "all",
                                      "-j", "1", *TINY])
    assert result.exit_code == 0, result.output
    return ds, work, work / ds.name, result.output


def test_parse_fold():
    assert parse_fold("all") == "all" and parse_fold("ALL") == "all" and parse_fold("3") == 3 and parse_fold(2) == 2
    for bad in ("-1", "x", "1.5", True):
        with pytest.raises(SegkitError, match="non-negative integer or 'all'"):
            parse_fold(bad)


def test_split_messages_name_the_real_command():
    with pytest.raises(SegkitError, match=r"segkit run DATASET -f all"):
        make_splits(["a"], folds=5)


def test_fold_all_trains_on_every_case_without_validation(fold_all_run):
    ds, work, wd, output = fold_all_run
    fold = wd / "models" / "3d_fullres" / "fold_all"
    ckpt = torch.load(fold / "checkpoint_final.pt", map_location="cpu", weights_only=True)
    assert ckpt["train_cases"] == CASES and ckpt["fold"] == "all"
    fold0 = torch.load(wd / "models" / "3d_fullres" / "fold_0" / "checkpoint_final.pt", weights_only=True)
    assert len(fold0["train_cases"]) == 2  # the numbered fold still trains on its split
    assert not (fold / "validation").exists()
    assert (wd / "models" / "3d_fullres" / "fold_0" / "validation" / "summary.json").is_file()
    log = (fold / "training_log.txt").read_text(encoding="utf-8")
    assert NO_VALIDATION in log and "pseudo-Dice are computed on training cases" in log
    assert "4 training case(s)" in log
    assert "0:trained" in output and "all:trained" in output


def test_selection_ignores_fold_all(fold_all_run):
    _, _, wd, _ = fold_all_run
    selection = json.loads((wd / "selection.json").read_text())
    assert selection["folds"]["3d_fullres"]["present"] == [0]
    assert any("fold_all ignored" in w and NO_VALIDATION in w for w in selection["warnings"])


def test_status_and_run_again_know_fold_all(fold_all_run):
    ds, work, wd, _ = fold_all_run
    runner = CliRunner()
    status = runner.invoke(cli, ["status", str(ds), "--work", str(work)])
    assert status.exit_code == 0, status.output
    line = next(x for x in status.output.splitlines() if x.startswith("train/3d_fullres/all"))
    assert "finished" in line
    again = runner.invoke(cli, ["run", str(ds), "--work", str(work), "-c", "3d_fullres", "-f", "all", "-j", "1",
                                *TINY])
    assert again.exit_code == 0, again.output
    assert "all:done" in again.output


def test_predict_and_export_with_fold_all(fold_all_run, tmp_path):
    ds, work, wd, _ = fold_all_run
    runner = CliRunner()
    model = wd / "models" / "3d_fullres"
    out = tmp_path / "pred"
    res = runner.invoke(cli, ["predict", "-m", str(model), "-i", str(ds / "imagesTs"), "-o", str(out),
                              "--folds", "all", "--device", "cpu", "--no-tta"])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in out.glob("*.nii.gz")) == ["phantom_004.nii.gz", "phantom_005.nii.gz"]
    bundle = tmp_path / "bundle"
    res = runner.invoke(cli, ["export", str(ds), "--work", str(work), "-o", str(bundle), "-c", "3d_fullres",
                              "--folds", "all"])
    assert res.exit_code == 0, res.output
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["folds"] == {"3d_fullres": ["all"]} and manifest["cv_score"] is None
    assert (bundle / "models" / "3d_fullres" / "fold_all" / "checkpoint_final.pt").is_file()
    assert not (bundle / "models" / "3d_fullres" / "fold_0").exists()
    selection = json.loads((wd / "selection.json").read_text())  # the winner is 3d_fullres: its postprocessing
    assert json.loads((bundle / "postprocessing.json").read_text()) == selection["postprocessing"]["decision"]
    res = runner.invoke(cli, ["predict", "-m", str(bundle), "-i", str(ds / "imagesTs"), "-o", str(tmp_path / "b"),
                              "--device", "cpu", "--no-tta"])
    assert res.exit_code == 0, res.output
    assert len(list((tmp_path / "b").glob("*.nii.gz"))) == 2


def test_resume_fold_all(fold_all_run):
    ds, work, wd, _ = fold_all_run
    res = CliRunner().invoke(cli, ["train", str(ds), "--work", str(work), "-c", "3d_fullres", "-f", "all",
                                   "--resume", "--epochs", "2", "--skip-validation"])
    assert res.exit_code == 0, res.output
    ckpt = torch.load(wd / "models" / "3d_fullres" / "fold_all" / "checkpoint_final.pt", weights_only=True)
    assert ckpt["epoch"] == 2 and ckpt["train_cases"] == CASES


def test_bad_fold_is_a_usage_error(fold_all_run):
    ds, work, _, _ = fold_all_run
    res = CliRunner().invoke(cli, ["train", str(ds), "--work", str(work), "-c", "3d_fullres", "-f", "every"])
    assert res.exit_code == 2 and "non-negative integer or 'all'" in res.output


def test_run_fold_all_needs_no_splits(tmp_path):
    """One training case: cross-validation is impossible, fold all trains (and selection is skipped)."""
    ds = make_phantom_dataset(tmp_path / "raw", n_train=1, n_test=0, seed=5, extent_mm=(40.0, 48.0, 48.0))
    work = tmp_path / "work"
    res = CliRunner().invoke(cli, ["run", str(ds), "--work", str(work), "-c", "3d_fullres", "-f", "all", "-j", "1",
                                   *TINY])
    assert res.exit_code == 0, res.output
    wd = work / ds.name
    assert (wd / "models" / "3d_fullres" / "fold_all" / "checkpoint_final.pt").is_file()
    assert not (wd / "splits_final.json").exists() and not (wd / "selection.json").exists()
