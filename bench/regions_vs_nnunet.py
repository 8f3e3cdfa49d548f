"""Region training at equal iterations: segkit vs nnunetv2's region trainer, real BraTS cases, CPU.

Usage: .venv/bin/python bench/regions_vs_nnunet.py [--config 2d|3d_fullres] [--epochs 5] [--iters 20]
                                                    [--val-iters 2] [--batch-size N] [--precision auto|fp32|mixed] [--no-tta]
The four labelled BraTS 2015 cases of shared/data/BraTS2015_deepmedic_examples (FLAIR + T1c, labels 0-4)
become one canonical dataset with the BraTS regions whole tumour [1,2,3,4], tumour core [1,3,4] and
enhancing tumour 4, regions_class_order [2, 1, 4] (tests/conftest.py ``brats_to_canonical``); the
nnU-Net raw layout is the same format, so both tools read the very same folder. Each tool plans and
preprocesses it itself; the run refuses to start unless both plans of ``--config`` have the same
patch and network. Both train fold 0 of one split (3 training cases, 1 validation case,
splits_final.json given to both) for ``epochs x iters`` iterations at the same batch (the peer plan's,
or ``--batch-size`` for both: a copy of the peer's plans ``nnUNetPlans_bs<N>``), each in its own
subprocess with 0 augmentation workers: segkit's Trainer with the sigmoid + BCE + Dice region loss,
nnunetv2 2.8.1's default ``nnUNetTrainer``, which switches to regions itself when dataset.json declares
them (its LabelManager). Each then predicts the validation case with its own validation inference
(sliding window, step 0.5, mirroring unless ``--no-tta``). ONE evaluator scores both label maps: segkit's toolkit.evaluation with
the dataset's region definitions (a voxel is in a region when its label is one of the region's values),
so the Dice columns are comparable. Printed: Dice per region for each, the difference, the median
s/iter of each (median epoch time / iters; an epoch also runs ``val_iters`` validation iterations) and
the ratio, the validation prediction time, the peak RSS (VmHWM) of each training process, and the load
average before and after each run. One run of each, segkit first, nothing alternated: on a shared
machine the timing ratio carries the load difference between the two runs.

Measured 2026-11-30 (bench/README.md "Region training vs nnunetv2 (BraTS)") on quiet cores, three runs of the
pair (``--epochs 8 --iters 25 --val-iters 2 --batch-size 2 --no-tta``, ``--seed 0/1/2``): mean Dice over the
regions 0.7150 / 0.7937, 0.4987 / 0.4630, 0.5888 / 0.5917 (segkit / nnunetv2), i.e. 0.601 vs 0.616 on average,
while runs of the same tool scatter with a standard deviation of 0.11 / 0.17: on 3 training cases and 1
validation case the tools cannot be told apart. s/iter 0.78-0.86 vs 1.29-1.40 (1.63-1.70x, segkit bf16 vs
nnunetv2 fp32); validation prediction 35.2-40.4 s vs 37.8-40.1 s. bench/regions_pipeline_vs_nnunet.py checks
the parts below the training loop directly (the region loss on the same tensors, the loaders' region statistics).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

from _train_pair import (
    REPO,
    TrainedRun,
    check_same_plan,
    peer_fold,
    peer_plans_with_batch,
    preprocess_both,
    train_ours,
    train_peer,
)

sys.path.insert(0, str(REPO / "tests"))

from conftest import brats_to_canonical  # noqa: E402

from toolkit.evaluation.evaluate import evaluate_spec_cases, evaluation_spec  # noqa: E402
from toolkit.planning import load_preset  # noqa: E402

DATASET = "Dataset015_BraTS2015"
DATASET_ID = "15"
BRATS = REPO.parent / "shared" / "data" / "BraTS2015_deepmedic_examples" / "examples" / "dataForExamples" \
    / "brats2015TrainingData"


def prepare(scratch: Path, config: str) -> tuple[Path, Path]:
    """The canonical BraTS region dataset (raw folder of both tools), preprocessed by each (idempotent)."""
    if not BRATS.is_dir():
        raise SystemExit(f"{BRATS}: BraTS example cases not found (shared/data)")
    raw = scratch / "raw" / DATASET
    if not (raw / "dataset.json").is_file():
        brats_to_canonical(BRATS, scratch / "raw")
    work = scratch / "segkit_work"
    preprocess_both(raw, work, scratch, DATASET_ID, config)
    # segkit reads the dataset folder's splits_final.json; nnunetv2 reads its preprocessed folder's
    shutil.copy(raw / "splits_final.json", scratch / "nnunet_pre" / DATASET / "splits_final.json")
    return raw, work


def region_dice(run: TrainedRun, raw: Path, spec, cases: list[str]) -> dict[str, float | None]:
    """Mean Dice per region key (and "mean") of ``run``'s validation label maps, scored by segkit's evaluator."""
    ending = ".nii.gz"
    triples = [(c, run.fold / "validation" / f"{c}{ending}", raw / "labelsTr" / f"{c}{ending}") for c in cases]
    summary = evaluate_spec_cases(triples, spec, surface_metrics=False, desc=None)
    dice = {k: v["Dice"] for k, v in summary["mean"].items()}
    dice["mean"] = summary["foreground_mean"]["Dice"]
    return dice


def _load() -> str:
    return "load average " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def _fmt(x: float | None) -> str:
    return "   -  " if x is None else f"{x:.4f}"


def report(ours: TrainedRun, peer: TrainedRun, d_ours: dict, d_peer: dict, names: dict, iters: int) -> None:
    """The side-by-side table: Dice per region, difference, s/iter and ratio, validation time, peak RSS."""
    print(f"  {'region':<24} {'segkit':>8} {'nnunetv2':>8} {'diff':>8}")
    for key in d_ours:
        a, b = d_ours[key], d_peer[key]
        diff = "   -  " if a is None or b is None else f"{a - b:+.4f}"
        label = "mean over regions" if key == "mean" else f"{names[key]} {key}"
        print(f"  {label:<24} {_fmt(a):>8} {_fmt(b):>8} {diff:>8}")
    t_ours, t_peer = ours.s_per_iter(iters), peer.s_per_iter(iters)
    print(f"  s/iter (median epoch)    {t_ours:8.2f} {t_peer:8.2f}   nnunetv2/segkit {t_peer / t_ours:.2f}x")
    print(f"  validation prediction s  {ours.validation_s:8.1f} {peer.validation_s:8.1f}   "
          f"nnunetv2/segkit {peer.validation_s / ours.validation_s:.2f}x")
    print(f"  peak RSS of training MiB {ours.peak_rss_mib:8.0f} {peer.peak_rss_mib:8.0f}   "
          f"segkit/nnunetv2 {ours.peak_rss_mib / peer.peak_rss_mib:.2f}")
    print(f"  precision: segkit {ours.precision}, nnunetv2 {peer.precision} (AMP on CUDA only); "
          f"networks {ours.network} / {peer.network}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="2d", choices=["2d", "3d_fullres"])
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--val-iters", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=None,
                    help="train both with this batch instead of the peer plan's (a copy of the peer's plans, same "
                         "preprocessed data, named <plans>_bs<N>)")
    ap.add_argument("--precision", default="auto", choices=["auto", "fp32", "mixed"],
                    help="segkit's training precision (auto: bf16 on CPUs with native bf16); nnunetv2 trains fp32 on CPU")
    ap.add_argument("--no-tta", dest="tta", action="store_false",
                    help="validation predictions of both without mirroring (4x fewer forward passes in 2d)")
    ap.add_argument("--seed", type=int, default=0, help="segkit's seed (nnunetv2 seeds nothing)")
    ap.add_argument("--scratch", type=Path, default=Path(tempfile.gettempdir()) / "segkit_bench_brats")
    args = ap.parse_args()
    raw, work = prepare(args.scratch, args.config)
    plans_name = load_preset("default").nnunet_plans_name
    folder = args.scratch / "nnunet_pre" / DATASET
    peer_config = json.loads((folder / f"{plans_name}.json").read_text(encoding="utf-8"))["configurations"][args.config]
    ours_plans = json.loads((work / DATASET / "plans.json").read_text(encoding="utf-8"))
    check_same_plan(ours_plans["configurations"][args.config], peer_config, args.config)
    bs = peer_config["batch_size"]
    if args.batch_size is not None and args.batch_size != bs:
        plans_name, bs = peer_plans_with_batch(folder, plans_name, args.config, args.batch_size), args.batch_size
    for stale in (work / DATASET / "models", peer_fold(args.scratch, DATASET, plans_name, args.config).parent):
        shutil.rmtree(stale, ignore_errors=True)  # validation outputs of an earlier run must not be reused
    print(f"before segkit: {_load()}", flush=True)
    ours = train_ours(raw, work, args.config, args.epochs, args.iters, args.val_iters, bs, args.precision, args.seed,
                      args.tta)
    print(f"before nnunetv2: {_load()}", flush=True)
    peer = train_peer(args.scratch, DATASET_ID, args.config, args.epochs, args.iters, args.val_iters, plans_name, args.tta)
    print(f"after both: {_load()}", flush=True)
    dataset_json = json.loads((raw / "dataset.json").read_text(encoding="utf-8"))
    spec = evaluation_spec(dataset_json)
    val = json.loads((raw / "splits_final.json").read_text(encoding="utf-8"))[0]["val"]
    d_ours, d_peer = region_dice(ours, raw, spec, val), region_dice(peer, raw, spec, val)
    print(f"{DATASET} fold 0 ({len(val)} validation case(s): {', '.join(val)}), {args.config} patch "
          f"{'x'.join(map(str, peer_config['patch_size']))}, {args.epochs} x {args.iters} iterations "
          f"(+{args.val_iters} validation iterations per epoch), batch {bs}, validation {'with' if args.tta else 'without'} mirroring, one run each:")
    report(ours, peer, d_ours, d_peer, spec.names_by_key(), args.iters)


if __name__ == "__main__":
    main()
