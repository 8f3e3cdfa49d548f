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
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HIPPO = REPO.parent / "shared" / "data" / "Task04_Hippocampus"
DATASET = "Dataset004_Hippocampus"
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO / "tests"))

from _peer import peer_bin, peer_env  # noqa: E402


def peer_plans_name(preset: str = "default") -> str:
    """nnunetv2's plans identifier of ``preset`` (nnUNetPlans, nnUNetResEncUNetMPlans, ...)."""
    from toolkit.planning import load_preset

    return load_preset(preset).nnunet_plans_name


def segkit_work(scratch: Path, preset: str = "default") -> Path:
    return scratch / ("segkit_work" if preset == "default" else f"segkit_work_{preset}")


def prepare(scratch: Path, n_cases: int, preset: str = "default") -> dict[str, Path]:
    """Raw subset + segkit work dir + nnU-Net folders for ``preset`` (idempotent)."""
    from conftest import msd_to_v2

    from toolkit.cli import main
    from toolkit.planning import load_preset

    settings = load_preset(preset)
    raw = scratch / "raw" / DATASET
    if not raw.is_dir():
        msd_to_v2(HIPPO, raw, max_cases=n_cases)
    work = segkit_work(scratch, preset)
    if not (work / DATASET / "preprocessed" / "3d_fullres").is_dir():
        for args in (["fingerprint"], ["plan", "--preset", preset], ["preprocess", "-c", "3d_fullres"]):
            try:
                main([args[0], str(raw), "--work", str(work), *args[1:]])
            except SystemExit as exc:
                if exc.code:
                    raise
    env = peer_env(scratch / "raw", scratch / "nnunet_pre", scratch / "nnunet_res")
    if not _peer_preprocessed(scratch, settings.nnunet_plans_name):
        subprocess.run([str(peer_bin("nnUNetv2_plan_and_preprocess")), "-d", "4", "-c", "3d_fullres",
                        "-pl", settings.nnunet_planner, "--verify_dataset_integrity", "-np", "2"],
                       env=env, check=True)
    # the same fold for both: our splits file is copied to the peer
    splits = work / DATASET / "splits_final.json"
    if not splits.is_file():
        from toolkit.training.setup import resolve_training

        resolve_training(raw, work, "3d_fullres", 0)
    shutil.copy(splits, scratch / "nnunet_pre" / DATASET / "splits_final.json")
    return {"raw": raw, "work": work, "env": env}  # type: ignore[dict-item]


def _peer_preprocessed(scratch: Path, plans_name: str) -> bool:
    """Plans ``plans_name`` exist and so does their 3d_fullres data folder (its data identifier)."""
    plans = scratch / "nnunet_pre" / DATASET / f"{plans_name}.json"
    if not plans.is_file():
        return False
    config = json.loads(plans.read_text(encoding="utf-8"))["configurations"]["3d_fullres"]
    return (plans.parent / config["data_identifier"]).is_dir()


def peer_plan(scratch: Path, preset: str = "default") -> dict:
    """nnunetv2's 3d_fullres configuration of ``preset``'s plans."""
    path = scratch / "nnunet_pre" / DATASET / f"{peer_plans_name(preset)}.json"
    return json.loads(path.read_text(encoding="utf-8"))["configurations"]["3d_fullres"]
