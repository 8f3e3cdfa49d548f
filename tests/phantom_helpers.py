"""A tiny phantom dataset with two fixed folds, for tests that train end to end (pipeline, SLURM), and the
tests' own Dice of predictions against the phantom's reference labels."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from toolkit.io.images import read_image
from toolkit.phantom import make_phantom_dataset

# `segkit demo` in a short form (the shared ``short_demo`` fixture of tests/conftest.py): 6 phantom cases,
# 2 folds, 2d and 3d_fullres trained 3 epochs of 6 iterations per fold (enough to segment the organ, not
# the small lesion), selection, export, test-set prediction, evaluation and report. SHORT_DEMO_RUN: the
# same training options for `segkit run` on its work dir (which then finds every fold done).
SHORT_DEMO = ["--cases", "6", "--folds", "2", "--epochs", "3", "--iters-per-epoch", "6"]
SHORT_DEMO_RUN = ["--epochs", "3", "--iters-per-epoch", "6", "--val-iters", "2", "--num-workers", "0",
                  "--device", "cpu"]


def tiny_phantom_two_folds(root: Path, n_train: int = 6) -> Path:
    """Small phantoms (40x48x48 mm) with a splits_final.json of two folds (even / odd cases)."""
    ds = make_phantom_dataset(root, n_train=n_train, n_test=2, seed=3, extent_mm=(40.0, 48.0, 48.0))
    (ds / "splits_final.json").write_text(json.dumps([
        {"train": [f"phantom_{i:03d}" for i in range(n_train) if i % 2 != k],
         "val": [f"phantom_{i:03d}" for i in range(n_train) if i % 2 == k]} for k in range(2)]))
    return ds


def dice(pred: np.ndarray, ref: np.ndarray, label: int) -> float | None:
    """Dice of one label by plain counting (None when both are empty): the tests' own, independent of
    toolkit.evaluation."""
    p, r = pred == label, ref == label
    total = int(p.sum()) + int(r.sum())
    return None if total == 0 else 2.0 * int((p & r).sum()) / total


def dice_on_test_set(pred_dir: Path, dataset: Path, labels: tuple[int, ...] = (1, 2)) -> dict[str, dict[int, float]]:
    """Per test case (``imagesTs``) and label: the Dice of ``pred_dir/<case>.nii.gz`` against ``labelsTs``."""
    out = {}
    for ref_path in sorted((dataset / "labelsTs").glob("*.nii.gz")):
        case = ref_path.name[: -len(".nii.gz")]
        pred, _ = read_image(pred_dir / ref_path.name)
        ref, _ = read_image(ref_path)
        out[case] = {label: dice(pred, ref, label) for label in labels}
    return out
