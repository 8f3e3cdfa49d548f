"""Shared setup of the trainer benchmarks: one Hippocampus subset, preprocessed by segkit and by nnunetv2.

Both tools get the same raw cases (MSD Task04_Hippocampus converted to the v2 layout) and preprocess
them with their own pipelines (same rules: 1 mm spacing, per-image z-score), so the loaders and
trainers compare on equivalent arrays, same patch and batch size (the peer's plan), same fold.

``preset`` chooses the planner on both sides (toolkit/planning/presets.yaml names nnunetv2's planner
class and plans identifier for each): segkit plans into its own work directory per preset
(``segkit_work`` for the default, ``segkit_work_<preset>`` otherwise), nnunetv2 writes
``<plans identifier>.json`` beside the default's; its ResEnc plans keep the data identifier
``nnUNetPlans_3d_fullres`` (same spacing and normalisation), so the preprocessed arrays are shared.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HIPPO = REPO.parent / "shared" / "data" / "Task04_Hippocampus"
DATASET = "Dataset004_Hippocampus"
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO / "tests"))

from _train_pair import preprocess_both  # noqa: E402


def peer_plans_name(preset: str = "default") -> str:
    """nnunetv2's plans identifier of ``preset`` (nnUNetPlans, nnUNetResEncUNetMPlans, ...)."""
    from toolkit.planning import load_preset

    return load_preset(preset).nnunet_plans_name


def segkit_work(scratch: Path, preset: str = "default") -> Path:
    return scratch / ("segkit_work" if preset == "default" else f"segkit_work_{preset}")


def prepare(scratch: Path, n_cases: int, preset: str = "default") -> dict[str, Path]:
    """Raw subset + segkit work dir + nnU-Net folders for ``preset`` (idempotent)."""
    from conftest import msd_to_v2

    raw = scratch / "raw" / DATASET
    if not raw.is_dir():
        msd_to_v2(HIPPO, raw, max_cases=n_cases)
    work = segkit_work(scratch, preset)
    env = preprocess_both(raw, work, scratch, "4", "3d_fullres", preset)
    # the same fold for both: our splits file is copied to the peer
    splits = work / DATASET / "splits_final.json"
    if not splits.is_file():
        from toolkit.training.setup import resolve_training

        resolve_training(raw, work, "3d_fullres", 0)
    shutil.copy(splits, scratch / "nnunet_pre" / DATASET / "splits_final.json")
    return {"raw": raw, "work": work, "env": env}  # type: ignore[dict-item]


def peer_plan(scratch: Path, preset: str = "default") -> dict:
    """nnunetv2's 3d_fullres configuration of ``preset``'s plans."""
    path = scratch / "nnunet_pre" / DATASET / f"{peer_plans_name(preset)}.json"
    return json.loads(path.read_text(encoding="utf-8"))["configurations"]["3d_fullres"]
