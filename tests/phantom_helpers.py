"""A tiny phantom dataset with two fixed folds, for tests that train end to end (pipeline, SLURM)."""

from __future__ import annotations

import json
from pathlib import Path

from toolkit.phantom import make_phantom_dataset


def tiny_phantom_two_folds(root: Path, n_train: int = 6) -> Path:
    """Small phantoms (40x48x48 mm) with a splits_final.json of two folds (even / odd cases)."""
    ds = make_phantom_dataset(root, n_train=n_train, n_test=2, seed=3, extent_mm=(40.0, 48.0, 48.0))
    (ds / "splits_final.json").write_text(json.dumps([
        {"train": [f"phantom_{i:03d}" for i in range(n_train) if i % 2 != k],
         "val": [f"phantom_{i:03d}" for i in range(n_train) if i % 2 == k]} for k in range(2)]))
    return ds
