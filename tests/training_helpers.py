"""Tiny synthetic work directories for trainer tests: hand-written plans, cases stored with save_case."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from toolkit.preprocessing.storage import save_case
from toolkit.workdir import WorkDir

PLAN_3D = {
    "spacing": [1.0, 1.0, 1.0], "median_shape": [24, 24, 24], "patch_size": [16, 16, 16], "batch_size": 2,
    "conv_kernel_sizes": [[3, 3, 3]] * 3, "pool_strides": [[2, 2, 2], [2, 2, 2]],
    "features_per_stage": [4, 8, 16], "data_identifier": "3d_fullres",
}


def synthetic_case(rng: np.random.Generator, shape=(24, 24, 24)) -> tuple[np.ndarray, np.ndarray, dict]:
    """A bright blob (label 1) with a small brighter core (label 2) in noise."""
    seg = np.zeros((1, *shape), np.int16)
    c = rng.integers(6, np.array(shape) - 6)
    zz, yy, xx = np.ogrid[: shape[0], : shape[1], : shape[2]]
    r2 = (zz - c[0]) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2
    seg[0][r2 <= 16] = 1
    seg[0][r2 <= 2] = 2
    data = (rng.normal(0, 1, (1, *shape)) + 2.0 * (seg > 0)).astype(np.float32)
    locs = {str(k): np.argwhere(seg[0] == k)[:10000].tolist() for k in (1, 2)}
    return data, seg, {"class_locations": locs}


def make_work(tmp: Path, n_cases: int = 6, plan: dict | None = None, config: str = "3d_fullres") -> tuple[Path, Path]:
    """(dataset_root, work) with plans.json, splits_final.json (2 folds) and stored cases."""
    root = tmp / "Dataset999_Synth"
    root.mkdir(parents=True, exist_ok=True)
    ds = {"channel_names": {"0": "MRI"}, "labels": {"background": 0, "a": 1, "b": 2}, "numTraining": n_cases,
          "file_ending": ".nii.gz"}
    (root / "dataset.json").write_text(json.dumps(ds))
    work = tmp / "work"
    wd = WorkDir.for_dataset(work, root)
    wd.root.mkdir(parents=True, exist_ok=True)
    plan = dict(plan or PLAN_3D)
    plans = {"dataset_name": root.name, "configurations": {config: plan}, "channel_names": ds["channel_names"],
             "labels": ds["labels"], "num_classes": 3}
    wd.plans.write_text(json.dumps(plans))
    rng = np.random.default_rng(0)
    ids = [f"case_{i:03d}" for i in range(n_cases)]
    for cid in ids:
        save_case(wd.preprocessed(plan.get("data_identifier", config)), cid, *synthetic_case(rng))
    half = n_cases // 2
    splits = [{"train": ids[half:], "val": ids[:half]}, {"train": ids[:half], "val": ids[half:]}]
    wd.splits.write_text(json.dumps(splits))
    return root, work


def interrupt_after_epochs(monkeypatch, epochs: int):
    """Make the trainer get SIGINT right after plotting epoch ``epochs`` (during the next epoch, as a user's
    Ctrl-C would); returns a function that undoes the patch before resuming."""
    import os
    import signal

    import toolkit.training.trainer as trainer_mod

    real_plot = trainer_mod.plot_progress

    def plot_then_interrupt(logs, path, *names):
        real_plot(logs, path, *names)
        if len(logs["lr"]) == epochs:
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(trainer_mod, "plot_progress", plot_then_interrupt)
    return lambda: monkeypatch.setattr(trainer_mod, "plot_progress", real_plot)
