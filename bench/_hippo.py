"""Shared setup of the trainer benchmarks: one Hippocampus subset, preprocessed by segkit and by nnunetv2.

Both tools get the same raw cases (MSD Task04_Hippocampus converted to the v2 layout) and preprocess
them with their own pipelines (same rules: 1 mm spacing, per-image z-score), so the loaders and
trainers compare on equivalent arrays, same patch and batch size (the peer's plan), same fold.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HIPPO = REPO.parent / "shared" / "data" / "Task04_Hippocampus"
DATASET = "Dataset004_Hippocampus"
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO / "tests"))

from _peer import peer_bin, peer_env  # noqa: E402


def prepare(scratch: Path, n_cases: int) -> dict[str, Path]:
    """Raw subset + segkit work dir + nnU-Net folders (idempotent)."""
    from conftest import msd_to_v2

    from toolkit.cli import main

    raw = scratch / "raw" / DATASET
    if not raw.is_dir():
        msd_to_v2(HIPPO, raw, max_cases=n_cases)
    work = scratch / "segkit_work"
    if not (work / DATASET / "preprocessed" / "3d_fullres").is_dir():
        for args in (["fingerprint"], ["plan"], ["preprocess", "-c", "3d_fullres"]):
            try:
                main([args[0], str(raw), "--work", str(work), *args[1:]])
            except SystemExit as exc:
                if exc.code:
                    raise
    env = peer_env(scratch / "raw", scratch / "nnunet_pre", scratch / "nnunet_res")
    if not (scratch / "nnunet_pre" / DATASET / "nnUNetPlans_3d_fullres").is_dir():
        subprocess.run([str(peer_bin("nnUNetv2_plan_and_preprocess")), "-d", "4", "-c", "3d_fullres",
                        "--verify_dataset_integrity", "-np", "2"], env=env, check=True)
    # the same fold for both: our splits file is copied to the peer
    splits = work / DATASET / "splits_final.json"
    if not splits.is_file():
        from toolkit.training.setup import resolve_training

        resolve_training(raw, work, "3d_fullres", 0)
    shutil.copy(splits, scratch / "nnunet_pre" / DATASET / "splits_final.json")
    return {"raw": raw, "work": work, "env": env}  # type: ignore[dict-item]


def peer_plan(scratch: Path) -> dict:
    plans = json.loads((scratch / "nnunet_pre" / DATASET / "nnUNetPlans.json").read_text())
    return plans["configurations"]["3d_fullres"]
