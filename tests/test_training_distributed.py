"""Data-parallel training, for real: 2 gloo processes on CPU equal one process with the same global batch."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from training_helpers import PLAN_3D, interrupt_after_epochs, make_work

from toolkit.training.augment import sample_size
from toolkit.training.distributed import context_from_env, launch_training
from toolkit.training.loader import BatchMaker, BatchSpec
from toolkit.training.options import TrainerOptions
from toolkit.training.sampling import PatchSpec, num_forced, shard_indices
from toolkit.training.setup import resolve_training
from toolkit.training.trainer import FINAL, LATEST, Trainer

OPTS = TrainerOptions(epochs=3, iters_per_epoch=3, val_iters=2, batch_size=4, num_workers=0, device="cpu",
                      save_every=10, final_validation=False, seed=5, precision="fp32")  # exact equality: no bf16


@pytest.mark.parametrize("batch,world", [(4, 2), (5, 2), (3, 3), (7, 4), (2, 1)])
def test_shards_partition_the_global_batch(batch, world):
    shards = [shard_indices(batch, r, world) for r in range(world)]
    assert [i for s in shards for i in s] == list(range(batch))
    assert max(map(len, shards)) - min(map(len, shards)) <= 1
    forced = [i >= batch - num_forced(batch) for s in shards for i in s]
    assert sum(forced) == max(1, round(batch * 0.33))  # the rule holds for the global batch


def test_batch_too_small_for_world_is_refused():
    with pytest.raises(ValueError):
        shard_indices(2, 0, 3)


def test_rank_shards_concatenate_to_the_single_process_batch(tmp_path):
    root, work = make_work(tmp_path)
    setup = resolve_training(root, work, "3d_fullres", 0)
    final = tuple(PLAN_3D["patch_size"])
    patches = PatchSpec(str(setup.preprocessed), setup.train_cases, final, sample_size(final), 5, setup.labels)

    def batch(rank: int, world: int) -> dict:
        return BatchMaker(BatchSpec(patches, 3, True, 11, 0, rank, world)).make(epoch=2, index=1)

    whole = batch(0, 1)
    parts = [batch(r, 2) for r in range(2)]
    assert [p["data"].shape[0] for p in parts] == [3, 2]
    for key in ("data", "seg"):
        assert np.array_equal(np.concatenate([p[key] for p in parts]), whole[key])
    assert whole["seg"][-num_forced(5):].max() > 0  # the forced samples hold foreground


def _final(fold_dir):
    return torch.load(fold_dir / FINAL, weights_only=True)


def _assert_same_run(a: dict, b: dict, rel: float = 1e-4) -> None:
    assert a["epoch"] == b["epoch"]
    for key in ("train_loss", "val_loss", "mean_fg_dice", "lr"):
        assert np.allclose(a["logs"][key], b["logs"][key], rtol=rel, atol=1e-5), (key, a["logs"][key], b["logs"][key])
    for key, value in a["network_weights"].items():
        assert torch.allclose(b["network_weights"][key], value, rtol=rel, atol=1e-5), key


@pytest.fixture(scope="module")
def single_run(tmp_path_factory):
    """The single-process reference (global batch 4)."""
    root, work = make_work(tmp_path_factory.mktemp("single"))
    return _final(Trainer(resolve_training(root, work, "3d_fullres", 0), OPTS).run())


def test_two_gloo_ranks_equal_one_process(tmp_path, single_run):
    from toolkit.cli import main

    root, work = make_work(tmp_path)
    with pytest.raises(SystemExit) as exit_info:  # the CLI: segkit train --num-gpus 2 --device cpu
        main(["train", str(root), "-c", "3d_fullres", "-f", "0", "--work", str(work), "--epochs", "3",
              "--iters-per-epoch", "3", "--val-iters", "2", "--batch-size", "4", "--num-workers", "0",
              "--device", "cpu", "--seed", "5", "--save-every", "10", "--skip-validation", "--num-gpus", "2", "--precision", "fp32"])
    assert exit_info.value.code == 0
    fold = resolve_training(root, work, "3d_fullres", 0).fold_dir
    ddp = _final(fold)
    assert ddp["options"]["world_size"] == 2
    _assert_same_run(single_run, ddp)
    assert (fold / "progress.png").is_file()
    assert (fold / "training_log.txt").read_text().count("epoch ") == 3  # rank 0 only writes


def test_torchrun_launch_equals_one_process(tmp_path, single_run):
    root, work = make_work(tmp_path)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "toolkit.cli", "train",
           str(root), "-c", "3d_fullres", "-f", "0", "--work", str(work), "--epochs", "3", "--iters-per-epoch", "3",
           "--val-iters", "2", "--batch-size", "4", "--num-workers", "0", "--device", "cpu", "--seed", "5",
           "--save-every", "10", "--skip-validation", "--precision", "fp32"]
    done = subprocess.run(cmd, capture_output=True, text=True, encoding="utf-8", errors="replace", timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    fold = resolve_training(root, work, "3d_fullres", 0).fold_dir
    assert done.stdout.split() == [str(fold)]  # rank 0 answers alone
    ddp = _final(fold)
    assert ddp["options"]["world_size"] == 2
    _assert_same_run(single_run, ddp)


def test_interrupted_single_run_resumes_on_two_ranks(tmp_path, single_run, monkeypatch):
    root, work = make_work(tmp_path)
    setup = resolve_training(root, work, "3d_fullres", 0)
    restore_plot = interrupt_after_epochs(monkeypatch, 1)  # SIGINT during epoch 2
    with pytest.raises(KeyboardInterrupt):
        Trainer(setup, OPTS).run()
    assert torch.load(setup.fold_dir / LATEST, weights_only=True)["epoch"] == 1
    restore_plot()
    launch_training(setup, OPTS.with_changes(world_size=2), resume=True)
    _assert_same_run(single_run, _final(setup.fold_dir))


def test_batch_dice_with_uneven_shards(tmp_path):
    """Batch Dice (all-reduced with gradients) and a global batch of 3 split 2 + 1."""
    plan = dict(PLAN_3D, batch_dice=True)
    opts = OPTS.with_changes(batch_size=3, epochs=2)
    root_a, work_a = make_work(tmp_path / "a", plan=plan)
    single = _final(Trainer(resolve_training(root_a, work_a, "3d_fullres", 0), opts).run())
    root_b, work_b = make_work(tmp_path / "b", plan=plan)
    ddp = _final(launch_training(resolve_training(root_b, work_b, "3d_fullres", 0), opts.with_changes(world_size=2)))
    _assert_same_run(single, ddp)


def test_torchrun_environment_is_detected():
    env = {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1", "MASTER_ADDR": "h", "MASTER_PORT": "1"}
    ctx = context_from_env(env)
    assert (ctx.rank, ctx.world_size, ctx.local_rank, ctx.is_main) == (1, 2, 1, False)
    assert context_from_env({**env, "WORLD_SIZE": "1"}) is None and context_from_env({}) is None


def test_world_larger_than_batch_is_a_one_line_error(tmp_path):
    from toolkit.cli import main

    root, work = make_work(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(["train", str(root), "-c", "3d_fullres", "-f", "0", "--work", str(work), "--batch-size", "2",
              "--num-gpus", "3", "--device", "cpu", "--epochs", "1"])
    assert exit_info.value.code == 2
    assert json.loads((work / root.name / "plans.json").read_text())  # nothing else touched
