"""Preprocessing throughput and fidelity: ``segkit preprocess`` vs ``nnUNetv2_preprocess``.

Both tools read the SAME canonical datasets (written once to a temp dir) and use the SAME plan:
nnU-Net's own planner makes ``nnUNetPlans.json`` and its 3d_fullres spacing, normalisation and
intensity statistics are copied into a segkit plans.json, so both resample to the same grid.
  - hippocampus: shared/data/Task04_Hippocampus converted to the v2 layout (``_0000`` copies)
  - ct: ``shared/tools/make_synth_dataset.py --preset ct`` (anisotropic, CT intensities)
Runs alternate (ours, peer, ours, peer ...) with the same worker count, as CLI processes
(interpreter start included). Peak RSS is the largest sum over the process tree, sampled every
0.1 s. Fidelity: per case, Pearson correlation of the preprocessed images and Dice per label of the
resampled segmentations (nnU-Net's -1 "outside the mask" counts as background).

    .venv/bin/python bench/preprocess_vs_nnunet.py [-j 2] [--repeats 2] [--ct-cases 6]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _peer import peer_bin, peer_env, peer_python  # noqa: E402
from fingerprint_vs_nnunet import make_hippocampus  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SEGKIT = REPO / ".venv" / "bin" / "segkit"
SYNTH = REPO.parent / "shared" / "tools" / "make_synth_dataset.py"
NORM = {"ZScoreNormalization": "zscore", "CTNormalization": "ct"}
DUMP = """
import sys, blosc2, numpy as np
from pathlib import Path
src, dst = Path(sys.argv[1]), Path(sys.argv[2])
for f in src.glob("*.b2nd"):
    np.save(dst / (f.name[:-5] + ".npy"), blosc2.open(str(f), mode="r")[:])
"""


def tree_rss_mib(root_pid: int) -> float:
    """Sum of RSS over ``root_pid`` and its descendants (scans /proc; no psutil needed)."""
    parents, rss = {}, {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(entry.name)] = int(fields[1])
        rss[int(entry.name)] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
    total, todo = 0, [root_pid]
    while todo:
        pid = todo.pop()
        total += rss.get(pid, 0)
        todo += [p for p, pp in parents.items() if pp == pid]
    return total / 2**20


def timed(cmd: list[str], env: dict | None = None) -> tuple[float, float]:
    """(seconds, peak tree RSS MiB) of a command; raises with its stderr if it fails."""
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak = 0.0
    while proc.poll() is None:
        peak = max(peak, tree_rss_mib(proc.pid))
        time.sleep(0.1)
    seconds = time.perf_counter() - t
    err = proc.stderr.read().decode()
    if proc.returncode:
        raise RuntimeError(f"{cmd[0]} failed ({proc.returncode}): {err[-2000:]}")
    return seconds, peak


def ds_id(dataset: Path) -> str:
    return dataset.name.split("_")[0].removeprefix("Dataset")


def plan_both(dataset: Path, env: dict, work: Path, jobs: int) -> dict:
    """nnU-Net fingerprint + plans (untimed); segkit plans.json copied from nnU-Net's 3d_fullres."""
    for tool in ("nnUNetv2_extract_fingerprint", "nnUNetv2_plan_experiment"):
        extra = ["-np", str(jobs)] if tool == "nnUNetv2_extract_fingerprint" else []
        subprocess.run([str(peer_bin(tool)), "-d", ds_id(dataset), *extra], env=env, check=True,
                       capture_output=True)
    peer_plans = json.loads((Path(env["nnUNet_preprocessed"]) / dataset.name / "nnUNetPlans.json").read_text())
    cfg = peer_plans["configurations"]["3d_fullres"]
    meta = json.loads((dataset / "dataset.json").read_text())
    plans = {
        "dataset_name": dataset.name, "transpose_forward": [0, 1, 2], "anisotropy_threshold": 3,
        "labels": meta["labels"], "channel_names": meta["channel_names"],
        "foreground_intensity_properties_per_channel": peer_plans["foreground_intensity_properties_per_channel"],
        "configurations": {"3d_fullres": {
            "spacing": cfg["spacing"], "normalization": [NORM[n] for n in cfg["normalization_schemes"]],
            "use_mask_for_norm": cfg["use_mask_for_norm"], "data_identifier": "3d_fullres"}},
    }
    if peer_plans["transpose_forward"] != [0, 1, 2]:
        print(f"  note: nnU-Net transposes {peer_plans['transpose_forward']}; fidelity compares after undoing it")
    (work / dataset.name).mkdir(parents=True, exist_ok=True)
    (work / dataset.name / "plans.json").write_text(json.dumps(plans))
    return peer_plans


def fidelity(dataset: Path, env: dict, work: Path, peer_plans: dict, tmp: Path) -> tuple[list, list]:
    """Per case: image correlation and per-label Dice between the two preprocessed outputs."""
    peer_dir = Path(env["nnUNet_preprocessed"]) / dataset.name / peer_plans["configurations"]["3d_fullres"][
        "data_identifier"]
    dump = tmp / f"dump_{dataset.name}"
    dump.mkdir()
    subprocess.run([str(peer_python()), "-c", DUMP, str(peer_dir), str(dump)], check=True)
    from toolkit.preprocessing.storage import list_cases, load_case

    ours_dir = work / dataset.name / "preprocessed" / "3d_fullres"
    back = np.argsort(peer_plans["transpose_forward"])
    corrs, dices = [], []
    for case in list_cases(ours_dir):
        data, seg, _ = load_case(ours_dir, case)
        p_data = np.load(dump / f"{case}.npy").transpose(0, *(back + 1))
        p_seg = np.maximum(np.load(dump / f"{case}_seg.npy"), 0).transpose(0, *(back + 1))
        if p_data.shape != data.shape:
            print(f"  shape mismatch {case}: ours {data.shape} nnU-Net {p_data.shape}")
            continue
        corrs.append(float(np.corrcoef(np.ravel(data), np.ravel(p_data))[0, 1]))
        for v in np.unique(p_seg[p_seg > 0]):
            a, b = seg == v, p_seg == v
            dices.append(2 * float((a & b).sum()) / max(float(a.sum() + b.sum()), 1))
    return corrs, dices


def bench_dataset(dataset: Path, tmp: Path, jobs: int, repeats: int) -> None:
    env = peer_env(tmp / "raw", tmp / "pre", tmp / "res")
    work = tmp / "work"
    peer_plans = plan_both(dataset, env, work, jobs)
    n = len(list((dataset / "labelsTr").glob("*.nii.gz")))
    ours_cmd = [str(SEGKIT), "preprocess", str(dataset), "--work", str(work), "-c", "3d_fullres", "-j", str(jobs),
                "--overwrite"]
    peer_cmd = [str(peer_bin("nnUNetv2_preprocess")), "-d", ds_id(dataset), "-c", "3d_fullres", "-np", str(jobs)]
    runs = {"segkit": [], "nnunetv2": []}
    for _ in range(repeats):  # A B A B
        runs["segkit"].append(timed(ours_cmd))
        runs["nnunetv2"].append(timed(peer_cmd, env))
    corrs, dices = fidelity(dataset, env, work, peer_plans, tmp)
    print(f"\n{dataset.name}: {n} cases, -j {jobs}, {repeats} alternating runs each, "
          f"spacing {peer_plans['configurations']['3d_fullres']['spacing']}")
    med = {}
    for tool, rs in runs.items():
        med[tool] = statistics.median(s for s, _ in rs)
        print(f"  {tool:9s} median {med[tool]:7.2f} s  {n / med[tool]:6.2f} cases/s  "
              f"peak RSS {max(p for _, p in rs):7.0f} MiB   runs: {', '.join(f'{s:.1f}' for s, _ in rs)} s")
    print(f"  throughput ratio segkit/nnunetv2: {med['nnunetv2'] / med['segkit']:.2f}x")
    if corrs:
        print(f"  fidelity over {len(corrs)} cases: image correlation min {min(corrs):.4f} median "
              f"{statistics.median(corrs):.4f}; label Dice min {min(dices):.4f} median {statistics.median(dices):.4f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-j", "--jobs", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--ct-cases", type=int, default=6)
    ap.add_argument("--skip-hippocampus", action="store_true")
    args = ap.parse_args()
    sys.path.insert(0, str(REPO))
    with tempfile.TemporaryDirectory(prefix="segkit-pp-bench-") as tmp:
        tmp = Path(tmp)
        raw = tmp / "raw"
        raw.mkdir()
        datasets = [] if args.skip_hippocampus else [make_hippocampus(raw)]
        subprocess.run([sys.executable, str(SYNTH), "--preset", "ct", "-n", str(args.ct_cases), "--num-test", "0",
                        "--id", "503", "--out", str(raw)], check=True, capture_output=True)
        datasets.append(raw / "Dataset503_SynthCT")
        for ds in datasets:
            bench_dataset(ds, tmp, args.jobs, args.repeats)


if __name__ == "__main__":
    main()
