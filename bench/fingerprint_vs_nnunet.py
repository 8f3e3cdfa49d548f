"""Fingerprint agreement and speed: segkit vs nnunetv2 (``nnUNetv2_extract_fingerprint``).

Both tools read the SAME canonical datasets (nnU-Net v2 raw layout, written once to a temp dir):
  - synth: ``shared/tools/make_synth_dataset.py --preset small -n N`` (Dataset501_SynthSmall)
  - hippocampus: shared/data/Task04_Hippocampus (MSD layout) converted on the fly
    (``_0000`` copies + a v2 dataset.json) as Dataset004_Hippocampus.
Runs are alternated (ours, peer, ours, peer ...) with the same worker count; both are timed as CLI
processes (interpreter start and imports included: that is what a user waits for). Prints the
differences (spacings, shapes after crop, relative size, foreground statistics in units of the
foreground std) and the median time ratio; then plans both tools' planners from nnunetv2's
fingerprint (``nnUNetv2_plan_experiment`` vs ``segkit plan --fingerprint``) and prints where the
configurations differ. nnunetv2 lives in bench/.peer-venv (bench/_peer.py).

    .venv/bin/python bench/fingerprint_vs_nnunet.py [--repeats 3] [-j 2] [--synth-cases 30]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _peer import peer_bin, peer_env  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
SEGKIT = REPO / ".venv" / "bin" / "segkit"
STAT_KEYS = ("mean", "median", "std", "min", "max", "percentile_00_5", "percentile_99_5")


def make_synth(raw: Path, n: int) -> Path:
    subprocess.run([sys.executable, str(SHARED / "tools" / "make_synth_dataset.py"), "--preset", "small",
                    "-n", str(n), "--id", "501", "--out", str(raw)], check=True, capture_output=True)
    return raw / "Dataset501_SynthSmall"


def make_hippocampus(raw: Path) -> Path:
    """MSD Task04 -> v2 layout: imagesTr/<case>_0000.nii.gz, labels as is, v2 dataset.json."""
    msd = SHARED / "data" / "Task04_Hippocampus"
    meta = json.loads((msd / "dataset.json").read_text())
    out = raw / "Dataset004_Hippocampus"
    (out / "imagesTr").mkdir(parents=True)
    (out / "labelsTr").mkdir()
    for entry in meta["training"]:
        name = Path(entry["image"]).name
        case = name[: -len(".nii.gz")]
        shutil.copy(msd / entry["image"], out / "imagesTr" / f"{case}_0000.nii.gz")
        shutil.copy(msd / entry["label"], out / "labelsTr" / name)
    labels = {("background" if int(k) == 0 else v): int(k) for k, v in meta["labels"].items()}
    (out / "dataset.json").write_text(json.dumps({
        "channel_names": dict(meta["modality"]), "labels": labels,
        "numTraining": len(meta["training"]), "file_ending": ".nii.gz"}, indent=2))
    return out


def run_ours(dataset: Path, work: Path, jobs: int) -> tuple[float, dict]:
    t = time.perf_counter()
    subprocess.run([str(SEGKIT), "fingerprint", str(dataset), "--work", str(work), "-j", str(jobs)],
                   check=True, capture_output=True)
    return time.perf_counter() - t, json.loads((work / dataset.name / "fingerprint.json").read_text())


def run_peer(dataset: Path, env: dict, jobs: int) -> tuple[float, dict]:
    ds_id = dataset.name.split("_")[0].removeprefix("Dataset")
    cmd = [str(peer_bin("nnUNetv2_extract_fingerprint")), "-d", ds_id, "-np", str(jobs), "--clean", "--no_pbar"]
    t = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, env=env)
    seconds = time.perf_counter() - t
    fp_path = Path(env["nnUNet_preprocessed"]) / dataset.name / "dataset_fingerprint.json"
    return seconds, json.loads(fp_path.read_text())


def compare(ours: dict, peer: dict) -> list[str]:
    """Human-readable differences between the two fingerprints."""
    lines = []
    n = len(peer["spacings"])
    if len(ours["spacings"]) != n:
        return [f"case counts differ: ours {len(ours['spacings'])}, nnunetv2 {n}"]
    sp = max(abs(a - b) for ca, cb in zip(ours["spacings"], peer["spacings"], strict=True)
             for a, b in zip(ca, cb, strict=True))
    shapes = sum(list(a) != list(b) for a, b in zip(ours["shapes_after_crop"], peer["shapes_after_crop"], strict=True))
    rel = ours["median_relative_size_after_cropping"] - peer["median_relative_size_after_cropping"]
    lines.append(f"  spacings: max |diff| {sp:.2e} mm over {n} cases; shapes_after_crop differ in {shapes} cases; "
                 f"median_relative_size_after_cropping diff {rel:+.2e}")
    for ch, p in peer["foreground_intensity_properties_per_channel"].items():
        o = ours["foreground_intensity_properties_per_channel"][str(ch)]
        lines.append(f"  channel {ch}: {'key':<16}{'segkit':>14}{'nnunetv2':>14}{'diff/std':>11}")
        for k in STAT_KEYS:
            d = (o[k] - p[k]) / p["std"] if p["std"] else float("nan")
            lines.append(f"  {'':10}{k:<16}{o[k]:>14.5g}{p[k]:>14.5g}{d:>+11.2e}")
    return lines


def compare_plans(dataset: Path, env: dict) -> list[str]:
    """Plan from nnU-Net's own fingerprint with both planners; print where the configurations differ."""
    ds_id = dataset.name.split("_")[0].removeprefix("Dataset")
    subprocess.run([str(peer_bin("nnUNetv2_plan_experiment")), "-d", ds_id], check=True, capture_output=True, env=env)
    pre = Path(env["nnUNet_preprocessed"]) / dataset.name
    out = subprocess.run([str(SEGKIT), "plan", "--fingerprint", str(pre / "dataset_fingerprint.json"),
                          "--dataset-json", str(dataset / "dataset.json")], check=True, capture_output=True, text=True)
    ours = json.loads(out.stdout)["configurations"]
    peer = json.loads((pre / "nnUNetPlans.json").read_text())["configurations"]
    lines = [f"  planners from the same (nnunetv2) fingerprint: configurations ours {sorted(ours)}, "
             f"nnunetv2 {sorted(peer)}"]
    for name, pc in peer.items():
        if name not in ours or "patch_size" not in pc:
            continue
        arch, oc = pc["architecture"]["arch_kwargs"], ours[name]
        pairs = {"spacing": (oc["spacing"], [round(v, 6) for v in pc["spacing"]]),
                 "patch_size": (oc["patch_size"], pc["patch_size"]), "batch_size": (oc["batch_size"], pc["batch_size"]),
                 "pool_strides": (oc["pool_strides"], arch["strides"][1:]),
                 "conv_kernel_sizes": (oc["conv_kernel_sizes"], arch["kernel_sizes"])}
        diffs = [f"{k} ours {a} vs {b}" for k, (a, b) in pairs.items()
                 if json.dumps(a) != json.dumps(b) and not (k == "spacing" and all(
                     abs(x - y) < 1e-4 for x, y in zip(a, b, strict=True)))]
        lines.append(f"    {name}: " + ("identical (spacing, patch, batch, strides, kernels)" if not diffs
                                         else "; ".join(diffs)))
    return lines


def bench_dataset(dataset: Path, tmp: Path, env: dict, jobs: int, repeats: int) -> float:
    ours_t, peer_t, ours_fp, peer_fp = [], [], None, None
    for r in range(repeats):
        t, ours_fp = run_ours(dataset, tmp / f"work{r}", jobs)
        ours_t.append(t)
        t, peer_fp = run_peer(dataset, env, jobs)
        peer_t.append(t)
    ratio = statistics.median(peer_t) / statistics.median(ours_t)
    print(f"{dataset.name}: {len(peer_fp['spacings'])} cases, -j {jobs}, {repeats} alternated runs each")
    print(f"  time segkit   {', '.join(f'{t:.2f}' for t in ours_t)} s  (median {statistics.median(ours_t):.2f})")
    print(f"  time nnunetv2 {', '.join(f'{t:.2f}' for t in peer_t)} s  (median {statistics.median(peer_t):.2f})")
    print(f"  nnunetv2 / segkit time ratio: {ratio:.2f}x")
    print("\n".join(compare(ours_fp, peer_fp)))
    print("\n".join(compare_plans(dataset, env)))
    return ratio


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("-j", "--jobs", type=int, default=2)
    ap.add_argument("--synth-cases", type=int, default=30)
    ap.add_argument("--datasets", nargs="+", choices=["synth", "hippocampus"], default=["synth", "hippocampus"])
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="fp_bench_") as d:
        tmp = Path(d)
        raw = tmp / "raw"
        env = peer_env(raw, tmp / "preprocessed", tmp / "results")
        makers = {"synth": lambda: make_synth(raw, args.synth_cases), "hippocampus": lambda: make_hippocampus(raw)}
        for name in args.datasets:
            bench_dataset(makers[name](), tmp / name, env, args.jobs, args.repeats)


if __name__ == "__main__":
    main()
