"""Training with ``--augment-on device`` on CPU torch: CLI, the recorded option, exact resume, defaults."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from training_helpers import interrupt_after_epochs, make_work

from toolkit.errors import SegkitError
from toolkit.training.options import TrainerOptions, default_num_workers, resolve_augment_on
from toolkit.training.setup import resolve_training
from toolkit.training.trainer import FINAL, LATEST, Trainer

OPTS = TrainerOptions(epochs=2, iters_per_epoch=2, val_iters=1, num_workers=0, device="cpu", save_every=10,
                      final_validation=False, seed=3, augment_on="device")


def test_augment_on_defaults_and_errors():
    assert resolve_augment_on(None, "cuda") == "device"
    assert resolve_augment_on(None, "cpu") == resolve_augment_on(None, "mps") == "workers"
    assert resolve_augment_on("device", "cpu") == "device"
    with pytest.raises(SegkitError, match="augment_on must be one of"):
        resolve_augment_on("gpu", "cuda")
    assert default_num_workers("cuda", cpus=16) == 12
    assert default_num_workers("cuda", cpus=16, augment_on="device") == 2  # the loader only crops
    assert default_num_workers("cuda", cpus=2, augment_on="device") == 0


@pytest.mark.slow  # two tiny trainings through the CLI (~10 s on 2 cores)
def test_cli_trains_with_device_augmentation_and_resume_keeps_it(tmp_path):
    from toolkit.cli import main

    root, work = make_work(tmp_path)
    common = ["train", str(root), "-c", "3d_fullres", "-f", "0", "--work", str(work), "--val-iters", "1",
              "--num-workers", "0", "--device", "cpu", "--skip-validation", "--iters-per-epoch", "2"]
    with pytest.raises(SystemExit) as exc:
        main([*common, "--epochs", "1", "--augment-on", "device"])
    assert exc.value.code == 0
    fold = resolve_training(root, work, "3d_fullres", 0).fold_dir
    assert torch.load(fold / FINAL, weights_only=True)["options"]["augment_on"] == "device"
    with pytest.raises(SystemExit) as exc:
        main([*common, "--epochs", "2", "--resume"])
    assert exc.value.code == 0
    ck = torch.load(fold / FINAL, weights_only=True)
    assert ck["epoch"] == 2 and ck["options"]["augment_on"] == "device"
    assert all(np.isfinite(ck["logs"]["train_loss"]))
    log = (fold / "training_log.txt").read_text(encoding="utf-8")
    assert log.count("augmentation on the device") == 2


def test_default_on_cpu_is_recorded_as_workers(tmp_path):
    root, work = make_work(tmp_path)
    trainer = Trainer(resolve_training(root, work, "3d_fullres", 0), replace(OPTS, augment_on=None))
    assert trainer.options.augment_on == "workers" and trainer.state()["options"]["augment_on"] == "workers"


@pytest.mark.slow  # three tiny trainings (~16 s on 2 cores)
def test_device_path_resume_matches_uninterrupted_run(tmp_path, monkeypatch):
    """Raw batches and device draws are functions of (seed, epoch, batch, sample): an interrupted
    and resumed run ends with the uninterrupted run's weights."""
    def train(root, work, resume=False):
        return Trainer(resolve_training(root, work, "3d_fullres", 0), OPTS).run(resume=resume)

    root_a, work_a = make_work(tmp_path / "a")
    full = torch.load(train(root_a, work_a) / FINAL, weights_only=True)
    root_b, work_b = make_work(tmp_path / "b")
    restore_plot = interrupt_after_epochs(monkeypatch, 1)  # SIGINT during epoch 2
    with pytest.raises(KeyboardInterrupt):
        train(root_b, work_b)
    fold_b = resolve_training(root_b, work_b, "3d_fullres", 0).fold_dir
    assert torch.load(fold_b / LATEST, weights_only=True)["epoch"] == 1
    restore_plot()
    resumed = torch.load(train(root_b, work_b, resume=True) / FINAL, weights_only=True)
    assert resumed["logs"]["train_loss"] == pytest.approx(full["logs"]["train_loss"], rel=1e-4)
    for key, value in full["network_weights"].items():
        assert torch.allclose(resumed["network_weights"][key], value, atol=1e-5), key
