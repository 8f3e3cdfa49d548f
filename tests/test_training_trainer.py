"""Trainer: resume after SIGINT continues the same schedule; checkpoints; one-line errors."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from training_helpers import interrupt_after_epochs, make_work

from toolkit.errors import SegkitError
from toolkit.training.options import TrainerOptions, poly_lr
from toolkit.training.setup import resolve_training
from toolkit.training.trainer import FINAL, LATEST, Trainer

OPTS = TrainerOptions(epochs=4, iters_per_epoch=2, val_iters=1, num_workers=0, device="cpu", save_every=10,
                      final_validation=False, seed=3)


def _train(root, work, resume=False):
    return Trainer(resolve_training(root, work, "3d_fullres", 0), OPTS).run(resume=resume)


def test_resume_after_interrupt_matches_uninterrupted_run(tmp_path, monkeypatch):
    root_a, work_a = make_work(tmp_path / "a")
    fold_a = _train(root_a, work_a)
    full = torch.load(fold_a / FINAL, weights_only=True)

    root_b, work_b = make_work(tmp_path / "b")
    restore_plot = interrupt_after_epochs(monkeypatch, 2)  # SIGINT during epoch 3
    with pytest.raises(KeyboardInterrupt):
        _train(root_b, work_b)
    fold_b = resolve_training(root_b, work_b, "3d_fullres", 0).fold_dir
    assert not (fold_b / FINAL).exists()
    interrupted = torch.load(fold_b / LATEST, weights_only=True)
    assert interrupted["epoch"] == 2 and len(interrupted["logs"]["lr"]) == 2
    restore_plot()
    _train(root_b, work_b, resume=True)
    resumed = torch.load(fold_b / FINAL, weights_only=True)

    assert resumed["epoch"] == full["epoch"] == 4
    assert resumed["logs"]["lr"] == pytest.approx(full["logs"]["lr"])
    assert full["logs"]["lr"] == pytest.approx([poly_lr(0.01, e, 4) for e in range(4)])
    assert resumed["logs"]["train_loss"] == pytest.approx(full["logs"]["train_loss"], rel=1e-4)
    for key, value in full["network_weights"].items():
        assert torch.allclose(resumed["network_weights"][key], value, atol=1e-5), key
    log = (fold_b / "training_log.txt").read_text()
    assert "interrupted" in log and "resumed" in log and log.count("epoch ") >= 4


def test_checkpoint_contents_and_model_folder(tmp_path):
    root, work = make_work(tmp_path)
    fold = _train(root, work)
    ck = torch.load(fold / FINAL, weights_only=True)
    for key in ("network_weights", "optimizer_state", "grad_scaler_state", "epoch", "logs", "rng_state",
                "config", "spec", "options"):
        assert key in ck
    assert ck["config"] == "3d_fullres" and ck["options"]["epochs"] == 4 and ck["spec"]["in_channels"] == 1
    assert (fold / "progress.png").stat().st_size > 1000
    assert (fold.parent / "plans.json").is_file() and (fold.parent / "dataset.json").is_file()
    assert len(ck["logs"]["pseudo_dice"][0]) == 2  # one per foreground class


def test_bad_fold_and_config_are_one_line_errors(tmp_path):
    root, work = make_work(tmp_path)
    with pytest.raises(SegkitError, match="fold 7 does not exist"):
        resolve_training(root, work, "3d_fullres", 7)
    with pytest.raises(SegkitError, match="not in the plans"):
        resolve_training(root, work, "2d", 0)
    cmd = [sys.executable, "-c", "from toolkit.cli import main; main()", "train", str(root), "-c", "3d_fullres", "-f", "9", "--work", str(work)]
    proc = subprocess.run(cmd, capture_output=True, text=True, encoding="utf-8", errors="replace", env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip().startswith("segkit: error:") and len(proc.stderr.strip().splitlines()) == 1


def test_cli_trains_and_resume_keeps_stored_options(tmp_path):
    from toolkit.cli import main

    root, work = make_work(tmp_path)
    args = ["train", str(root), "-c", "3d_fullres", "-f", "1", "--work", str(work), "--epochs", "1",
            "--iters-per-epoch", "1", "--val-iters", "1", "--num-workers", "0", "--device", "cpu",
            "--skip-validation"]
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code == 0
    with pytest.raises(SystemExit) as exc:
        main(args[:8] + ["--epochs", "2", "--resume", "--skip-validation"])
    assert exc.value.code == 0
    ck = torch.load(resolve_training(root, work, "3d_fullres", 1).fold_dir / FINAL, weights_only=True)
    assert ck["epoch"] == 2 and ck["options"]["iters_per_epoch"] == 1
