"""Planner presets vs nnunetv2 2.8.1's planners on varied fingerprints; writes the golden plans.

For each fingerprint (synthetic ones that mimic brain MRI, abdominal CT, BraTS-like 4-channel MRI, a
strongly anisotropic cine/prostate series, a huge EM volume, sagittal and coronal MRI, the LiTS-like
fingerprint of tests/test_planning_golden.py, and the real Hippocampus fingerprint when
../shared/data is there) this script writes nnU-Net's dataset_fingerprint.json + dataset.json into
scratch nnUNet_raw / nnUNet_preprocessed folders, runs the peer planner of every preset of
toolkit/planning/presets.yaml (``nnunet_planner``: ExperimentPlanner, nnUNetPlannerResEncM/L/XL) in
the peer venv, and stores the peer's configurations (in nnU-Net's transposed axis order, with its
transpose_forward/backward) and the fingerprints in tests/data/nnunet_plans_golden.json. Then it plans
the same fingerprints with segkit's presets and prints a side-by-side table and the agreement ratio
(spacing, patch, strides, kernels, features and blocks exact; batch within 1), after permuting
nnU-Net's lists back to the input's axis order (transpose_backward).

    SEGKIT_PEER_VENV=/work/peer-venv .venv/bin/python bench/plans_vs_nnunet.py [--compare-only]

``--compare-only`` skips the peer and compares with the stored golden file.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO))
GOLDEN = REPO / "tests" / "data" / "nnunet_plans_golden.json"
HIPPO = REPO.parent / "shared" / "data" / "Task04_Hippocampus"

sys.path.insert(0, str(REPO / "tests"))
from _peer import NNUNET_VERSION, peer_env, peer_python  # noqa: E402

# ---- fingerprints ---------------------------------------------------------------------------------


def _stats(rng: np.random.Generator, ct: bool) -> dict[str, float]:
    mean = float(rng.uniform(40, 120)) if ct else float(rng.uniform(200, 800))
    std = float(rng.uniform(30, 80)) if ct else mean / 3
    return {"max": mean + 6 * std, "mean": mean, "median": mean, "min": mean - 6 * std,
            "percentile_00_5": mean - 2.6 * std, "percentile_99_5": mean + 2.6 * std, "std": std}


def _entry(rng, spacings, shapes, rel, channels, labels):
    spacings = [[round(float(v), 4) for v in s] for s in spacings]
    shapes = [[int(v) for v in s] for s in shapes]
    fp = {"spacings": spacings, "shapes_after_crop": shapes, "median_relative_size_after_cropping": rel,
          "foreground_intensity_properties_per_channel": {
              str(i): _stats(rng, c.lower() == "ct") for i, c in enumerate(channels)}}
    ds = {"channel_names": {str(i): c for i, c in enumerate(channels)},
          "labels": {"background": 0} | {name: i + 1 for i, name in enumerate(labels)},
          "numTraining": len(spacings), "file_ending": ".nii.gz"}
    return {"fingerprint": fp, "dataset": ds}


def _jitter(rng, n, base, rel=0.08):
    return [[max(1, round(b * rng.uniform(1 - rel, 1 + rel))) for b in base] for _ in range(n)]


def synthetic_fingerprints() -> dict[str, dict]:
    """Deterministic fingerprints of typical acquisitions (numbers realistic, cases varied)."""
    rng = np.random.default_rng(1313)
    out = {}
    n = 40  # brain MRI, 1 mm isotropic, about 140 x 170 x 140 after cropping
    out["brain_mri"] = _entry(rng, [[1.0, 1.0, 1.0]] * n, _jitter(rng, n, [140, 170, 140]), 0.82,
                              ["T1"], ["csf", "gm", "wm"])
    n = 80  # abdominal CT, 2.5 x 0.8 x 0.8 mm, ~200 x 512 x 512, several organs
    zs = rng.choice([2.5] * 7 + [1.25, 3.0, 5.0], size=n)
    xy = np.round(rng.uniform(0.68, 0.92, size=n), 3)
    out["ct_abdomen"] = _entry(rng, [[z, s, s] for z, s in zip(zs, xy, strict=True)],
                               [[round(500 / z * rng.uniform(0.85, 1.15)), 512, 512] for z in zs], 0.95,
                               ["CT"], ["liver", "spleen", "kidney_l", "kidney_r", "pancreas", "stomach"])
    n = 60  # BraTS-like: 4 MRI channels, 1 mm, brain mask crop leaves ~60% of the volume
    out["brats_4ch"] = _entry(rng, [[1.0, 1.0, 1.0]] * n, _jitter(rng, n, [140, 172, 138], 0.06), 0.58,
                              ["T1", "T1ce", "T2", "FLAIR"], ["edema", "non_enhancing", "enhancing"])
    n = 50  # strongly anisotropic: 10 x 0.6 x 0.6 mm (some 5 mm series), ~16 x 384 x 384
    zs = rng.choice([10.0] * 8 + [5.0, 8.0], size=n)
    out["aniso_10x06"] = _entry(rng, [[z, 0.6, 0.6] for z in zs],
                                [[round(160 / z * rng.uniform(0.8, 1.2)), round(384 * rng.uniform(0.9, 1.1)),
                                  round(384 * rng.uniform(0.9, 1.1))] for z in zs], 0.9,
                                ["T2", "ADC"], ["peripheral", "transition"])
    # huge EM volumes (CREMI-like): 40 x 4 x 4 nm, 125 x 1250 x 1250 voxels, three volumes
    out["em_huge"] = _entry(rng, [[40.0, 4.0, 4.0]] * 3, [[125, 1250, 1250]] * 3, 1.0, ["EM"], ["cleft"])
    n = 30  # sagittal MRI: the coarse axis is numpy axis 2 (x), ~0.8 x 0.8 x 4 mm, 320 x 320 x 24
    xs = rng.choice([4.0] * 6 + [3.3, 4.4], size=n)
    out["sagittal_mri"] = _entry(rng, [[0.8, 0.8, x] for x in xs],
                                 [[round(320 * rng.uniform(0.9, 1.1)), round(320 * rng.uniform(0.9, 1.1)),
                                   round(96 / x * rng.uniform(0.85, 1.15))] for x in xs], 0.88,
                                 ["T2"], ["disc", "vertebra"])
    n = 30  # coronal MRI: the coarse axis is numpy axis 1 (y), 1 x 5 x 1 mm
    out["coronal_mri"] = _entry(rng, [[1.0, 5.0, 1.0]] * n, _jitter(rng, n, [256, 28, 256]), 0.9,
                                ["T1"], ["organ"])
    lits = [(0.7, 600), (1.0, 432), (1.0, 482), (2.5, 200), (5.0, 100)]  # tests/test_planning_golden.py
    out["lits_like"] = _entry(rng, [[z, 0.77, 0.77] for z, _ in lits], [[k, 512, 512] for _, k in lits], 1.0,
                              ["CT"], ["liver", "tumor"])
    out["lits_like"]["dataset"]["numTraining"] = 131
    n = 40  # BraTS regions + an ignore label: nnU-Net's estimate counts every labels entry (5 outputs here)
    out["brats_regions_ignore"] = _entry(rng, [[1.0, 1.0, 1.0]] * n, _jitter(rng, n, [136, 170, 136], 0.06),
                                         0.6, ["T1", "T1ce", "T2", "FLAIR"], [])
    out["brats_regions_ignore"]["dataset"].update(
        labels={"background": 0, "whole tumor": [1, 2, 3], "tumor core": [2, 3], "enhancing tumor": 3, "ignore": 4},
        regions_class_order=[1, 2, 3])
    return out


def hippocampus_fingerprint(scratch: Path) -> dict | None:
    """The real Task04_Hippocampus fingerprint (segkit's, equal to nnU-Net's: fingerprint_vs_nnunet.py)."""
    if not (HIPPO / "dataset.json").is_file():
        print(f"skipping Hippocampus: {HIPPO} is absent")
        return None
    from conftest import msd_to_v2

    from toolkit.dataset import load_dataset
    from toolkit.fingerprint import compute_fingerprint

    raw = msd_to_v2(HIPPO, scratch / "hippo" / "Dataset004_Hippocampus")
    fp = compute_fingerprint(load_dataset(raw), jobs=2)
    keep = ("spacings", "shapes_after_crop", "median_relative_size_after_cropping",
            "foreground_intensity_properties_per_channel")
    ds = json.loads((raw / "dataset.json").read_text(encoding="utf-8"))
    return {"fingerprint": {k: fp[k] for k in keep},
            "dataset": {k: ds[k] for k in ("channel_names", "labels", "numTraining", "file_ending")}}


# ---- the peer -------------------------------------------------------------------------------------

# The peer's own static_estimate_VRAM_usage, only run under torch's "meta" device (no parameter memory:
# compute_conv_feature_map_size reads shapes only) and memoised across planners: same numbers, minutes
# instead of an hour on two CPU cores.
PEER_SCRIPT = r"""
import contextlib, functools, importlib, json, sys
import torch
from nnunetv2.experiment_planning.experiment_planners.default_experiment_planner import ExperimentPlanner
jobs = json.load(sys.stdin)
modules = {"ExperimentPlanner": "default_experiment_planner"}
base = "nnunetv2.experiment_planning.experiment_planners."
original = ExperimentPlanner.static_estimate_VRAM_usage
@functools.lru_cache(maxsize=None)
def _memo(patch, cin, cout, name, kwargs_json, req):
    with torch.device("meta"):
        return int(original(list(patch), cin, cout, name, json.loads(kwargs_json), req))
def _estimate(patch_size, input_channels, output_channels, arch_class_name, arch_kwargs, arch_kwargs_req_import):
    return _memo(tuple(int(p) for p in patch_size), input_channels, output_channels, arch_class_name,
                 json.dumps(arch_kwargs, sort_keys=True, default=lambda o: list(o)), tuple(arch_kwargs_req_import))
ExperimentPlanner.static_estimate_VRAM_usage = staticmethod(_estimate)
out = {}
for job in jobs:
    mod = modules.get(job["planner"], "residual_unets.residual_encoder_unet_planners")
    cls = getattr(importlib.import_module(base + mod), job["planner"])
    with contextlib.redirect_stdout(sys.stderr):
        plans = cls(job["dataset"]).plan_experiment()
    configs = {}
    for name, c in plans["configurations"].items():
        if "architecture" not in c:
            configs[name] = {k: c[k] for k in ("inherits_from", "previous_stage") if k in c}
            continue
        a = c["architecture"]["arch_kwargs"]
        configs[name] = {
            "spacing": [float(v) for v in c["spacing"]], "patch_size": [int(v) for v in c["patch_size"]],
            "median_shape": [float(v) for v in c["median_image_size_in_voxels"]],
            "batch_size": int(c["batch_size"]), "strides": [list(map(int, s)) for s in a["strides"]],
            "kernel_sizes": [list(map(int, k)) for k in a["kernel_sizes"]],
            "features_per_stage": [int(f) for f in a["features_per_stage"]],
            "n_blocks_per_stage": [int(b) for b in a.get("n_blocks_per_stage", a.get("n_conv_per_stage"))],
            "n_conv_per_stage_decoder": [int(b) for b in a["n_conv_per_stage_decoder"]],
            "network_class_name": c["architecture"]["network_class_name"],
            "data_identifier": c["data_identifier"], "batch_dice": c.get("batch_dice"),
        }
    out.setdefault(job["key"], {})[job["preset"]] = {
        "plans_name": plans["plans_name"], "transpose_forward": plans["transpose_forward"],
        "transpose_backward": plans["transpose_backward"], "configurations": configs}
print(json.dumps(out))
"""


def run_peer(entries: dict[str, dict], presets: dict, scratch: Path) -> dict:
    """Plan every fingerprint with every preset's nnU-Net planner (one peer process)."""
    raw, pre = scratch / "nnUNet_raw", scratch / "nnUNet_preprocessed"
    env = peer_env(raw, pre, scratch / "nnUNet_results")
    jobs = []
    for i, (key, entry) in enumerate(entries.items()):
        name = f"Dataset{900 + i:03d}_{key}"
        ds = dict(entry["dataset"], overwrite_image_reader_writer="SimpleITKIO",
                  dataset={"case0": {"images": ["none_0000.nii.gz"], "label": "none.nii.gz"}})
        for folder, fname, data in ((raw, "dataset.json", ds), (pre, "dataset_fingerprint.json", entry["fingerprint"])):
            (folder / name).mkdir(parents=True, exist_ok=True)
            (folder / name / fname).write_text(json.dumps(data, indent=1), encoding="utf-8")
        jobs += [{"key": key, "dataset": name, "preset": p, "planner": s.nnunet_planner} for p, s in presets.items()]
    res = subprocess.run([str(peer_python()), "-c", PEER_SCRIPT], input=json.dumps(jobs), env=env,
                         capture_output=True, text=True)
    if res.returncode:
        sys.exit(f"peer planner failed:\n{res.stderr[-4000:]}")
    return json.loads(res.stdout)


# ---- report ---------------------------------------------------------------------------------------


def report(golden: dict) -> float:
    from plans_golden import compare_preset

    from toolkit.planning import load_presets

    total = agree = pending = 0
    print(f"{'fingerprint':<14}{'preset':<11}{'config':<12}{'field':<26}{'segkit':<34}nnunetv2 (input order)")
    for key, entry in golden["fingerprints"].items():
        for preset, peer in golden["plans"][key].items():
            for row in compare_preset(key, entry, peer, load_presets()[preset]):
                total += 1
                agree += row.ok
                pending += bool(row.note) and not row.ok
                mark = "" if row.ok else "  <-- differs" + (f" ({row.note})" if row.note else "")
                if not row.ok or row.field in ("patch_size", "batch_size"):
                    print(f"{key:<14}{preset:<11}{row.config:<12}{row.field:<26}{str(row.ours):<34}"
                          f"{row.peer}{mark}")
    ratio = agree / total if total else float("nan")
    print(f"\nagreement: {agree}/{total} fields = {ratio:.3f}")
    if pending:
        print(f"  of the {total - agree} differing fields, {pending} are 2d configurations sliced along another axis "
              f"(segkit transpose_forward differs); without them {agree}/{total - pending} = "
              f"{agree / (total - pending):.3f}")
    return ratio


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--compare-only", action="store_true", help="compare with the stored golden file")
    args = ap.parse_args(argv)
    if not args.compare_only:
        from toolkit.planning import load_presets

        with tempfile.TemporaryDirectory() as tmp:
            entries = synthetic_fingerprints()
            hippo = hippocampus_fingerprint(Path(tmp))
            if hippo is not None:
                entries["hippocampus"] = hippo
            plans = run_peer(entries, load_presets(), Path(tmp))
        golden = {"generated_by": "bench/plans_vs_nnunet.py", "nnunetv2": NNUNET_VERSION,
                  "note": "peer configurations in nnU-Net's transposed axis order; see transpose_backward",
                  "fingerprints": entries, "plans": plans}
        GOLDEN.parent.mkdir(parents=True, exist_ok=True)
        GOLDEN.write_text(json.dumps(golden, indent=1) + "\n", encoding="utf-8")
        print(f"wrote {GOLDEN}")
    report(json.loads(GOLDEN.read_text(encoding="utf-8")))


if __name__ == "__main__":
    main()
