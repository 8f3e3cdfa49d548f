"""Learning at equal iterations: segkit vs nnunetv2, 3d_fullres, Hippocampus subset, fold 0, CPU.

Usage: .venv/bin/python bench/train_vs_nnunet.py [--cases 60] [--epochs 20] [--iters 50] [--val-iters 10]
                                                  [--precision auto|fp32|mixed] [--repeats 1] [--first-seed 0]
                                                  [--preset default|resenc-m|resenc-l|resenc-xl] [--batch-size N]
Both train ``epochs x iters`` iterations with the peer's patch and batch size and the same split,
then predict the fold's validation cases with full inference settings; prints the mean foreground
Dice of each (target: segkit >= nnunetv2 - 0.01), the median seconds per epoch of ``iters``
training + ``val_iters`` validation iterations, divided by ``iters`` (each tool's own epoch times),
and the peak RSS (VmHWM) of each training process at the end of training, before the validation
predictions. Each training is its own subprocess (segkit in this venv, nnunetv2 in the peer's).
``--preset`` plans both sides with the same nnU-Net preset: segkit ``plan --preset resenc-m``,
nnunetv2 ``-pl nnUNetPlannerResEncM`` and ``nnUNetTrainer`` on plans ``nnUNetResEncUNetMPlans`` (the
names come from toolkit/planning/presets.yaml); the run refuses to start when the two 3d_fullres
plans differ in patch or network (features, kernels, strides, blocks per stage).
``--repeats N`` trains both N times (segkit with seeds S..S+N-1, S = ``--first-seed``; nnunetv2 seeds nothing)
and compares the means. Both train with 0 augmentation workers, on the same torch 2.13 CPU build.

Measured 2026-11-27, 60 cases (48 train / 12 validation), 20 x 50 iterations, batch 2, 2 quiet Zen 4 cores:
  fp32:  segkit 0.8558 Dice, 0.81 s/iter | nnunetv2 0.8608 Dice, 0.83 s/iter -> -0.0050, 1.02x
  bf16:  segkit 0.8545 Dice, 0.48 s/iter | nnunetv2 0.8602 Dice, 0.84 s/iter -> -0.0057, 1.77x
  bf16, two more runs (--repeats 2 --first-seed 1): segkit 0.8570, 0.8585 | nnunetv2 0.8550, 0.8541
        -> over all three bf16 runs segkit 0.8567 +- 0.0020, nnunetv2 0.8564 +- 0.0033 Dice (+0.0003),
        0.46 vs 0.85 s/iter (1.83x); run-to-run spread of either tool is larger than their difference.
ResEnc M (2026-11-30, quiet cores, one run): --preset resenc-m --cases 60 --epochs 10 --iters 50 --batch-size 2
  segkit 0.4384 Dice, 1.25 s/iter (bf16), 1949 MiB | nnunetv2 0.4477 Dice, 2.22 s/iter, 1883 MiB
  -> -0.0093 (target >= -0.01), 1.78x, peak RSS ratio 1.03 (500 iterations: far from converged).
In fp32 the step is the same network on the same torch: forward+backward take 0.737 s of our 0.746 s
step, the batch 9 ms, so only the loader can differ (2.1x, loader_vs_nnunet.py) and it barely shows
on CPU. bf16 autocast on a CPU with native bf16 (precision "auto") halves forward+backward.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
from pathlib import Path

from _hippo import DATASET, peer_plan, peer_plans_name, prepare
from _train_pair import (
    check_same_plan,
    foreground_dice,
    peer_fold,
    peer_plans_with_batch,
    train_ours,
    train_peer,
)

from toolkit.planning import preset_names

CONFIG = "3d_fullres"


def run_ours(paths: dict, epochs: int, iters: int, val_iters: int, batch_size: int,
             precision: str, seed: int = 0) -> tuple[float, float, str, float]:
    """Dice, s/iter, precision, peak RSS (MiB) of one segkit training subprocess."""
    run = train_ours(paths["raw"], paths["work"], CONFIG, epochs, iters, val_iters, batch_size, precision, seed)
    dice = foreground_dice(run.fold / "validation" / "summary.json")
    return dice, run.s_per_iter(iters), run.precision, run.peak_rss_mib


def run_peer(scratch: Path, epochs: int, iters: int, val_iters: int,
             plans_name: str) -> tuple[float, float, float, str]:
    """Dice, s/iter, peak RSS (MiB), network class of one nnunetv2 training subprocess (nnUNetTrainer on
    ``plans_name``)."""
    run = train_peer(scratch, "4", CONFIG, epochs, iters, val_iters, plans_name)
    dice = foreground_dice(run.fold / "validation" / "summary.json")
    return dice, run.s_per_iter(iters), run.peak_rss_mib, run.network


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", type=int, default=60)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--iters", type=int, default=50)
    ap.add_argument("--val-iters", type=int, default=10)
    ap.add_argument("--precision", default="auto", choices=["auto", "fp32", "mixed"],
                    help="segkit's training precision (auto: bf16 on CPUs with native bf16); nnunetv2 trains fp32 on CPU")
    ap.add_argument("--preset", default="default", choices=preset_names(),
                    help="planner preset of both tools (resenc-m: nnUNetPlannerResEncM / nnUNetResEncUNetMPlans)")
    ap.add_argument("--repeats", type=int, default=1, help="train both this many times (segkit seeds S..S+N-1)")
    ap.add_argument("--first-seed", type=int, default=0, help="S: segkit's first seed (more seeds after a first run)")
    ap.add_argument("--batch-size", type=int, default=None,
                    help="train both with this batch instead of the peer plan's (a copy of the peer's plans, same "
                         "preprocessed data, named <plans>_bs<N>): for presets whose planned batch is too large for CPU")
    ap.add_argument("--scratch", type=Path, default=Path(tempfile.gettempdir()) / "segkit_bench_hippo")
    args = ap.parse_args()
    paths = prepare(args.scratch, args.cases, args.preset)
    plans_name = peer_plans_name(args.preset)
    peer_config = peer_plan(args.scratch, args.preset)
    ours_plans = json.loads((paths["work"] / DATASET / "plans.json").read_text(encoding="utf-8"))
    check_same_plan(ours_plans["configurations"][CONFIG], peer_config, CONFIG)
    bs = peer_config["batch_size"]
    if args.batch_size is not None and args.batch_size != bs:
        folder = args.scratch / "nnunet_pre" / DATASET
        plans_name, bs = peer_plans_with_batch(folder, plans_name, CONFIG, args.batch_size), args.batch_size
    total = args.epochs * args.iters
    ours, peer = [], []
    for seed in range(args.first_seed, args.first_seed + args.repeats):
        for stale in (paths["work"] / DATASET / "models", peer_fold(args.scratch, DATASET, plans_name, CONFIG).parent):
            shutil.rmtree(stale, ignore_errors=True)  # validation outputs of an earlier run must not be reused
        ours.append(run_ours(paths, args.epochs, args.iters, args.val_iters, bs, args.precision, seed))
        peer.append(run_peer(args.scratch, args.epochs, args.iters, args.val_iters, plans_name))
        print(f"run {seed}: segkit {ours[-1][0]:.4f} Dice {ours[-1][1]:.2f} s/iter ({ours[-1][2]}) "
              f"peak RSS {ours[-1][3]:.0f} MiB, nnunetv2 {peer[-1][0]:.4f} Dice {peer[-1][1]:.2f} s/iter "
              f"peak RSS {peer[-1][2]:.0f} MiB", flush=True)
    d_ours, t_ours, m_ours = (statistics.mean(o[i] for o in ours) for i in (0, 1, 3))
    d_peer, t_peer, m_peer = (statistics.mean(p[i] for p in peer) for i in (0, 1, 2))
    print(f"{DATASET} fold 0, preset {args.preset} (nnunetv2 plans {plans_name}), 3d_fullres patch "
          f"{'x'.join(map(str, peer_config['patch_size']))}, {total} iterations, batch {bs}, "
          f"mean of {args.repeats} run(s):")
    print(f"  segkit   mean foreground Dice {d_ours:.4f}, {t_ours:.2f} s/iter ({ours[0][2]}), "
          f"peak RSS {m_ours:.0f} MiB")
    print(f"  nnunetv2 mean foreground Dice {d_peer:.4f}, {t_peer:.2f} s/iter (fp32: it uses AMP on CUDA only), "
          f"peak RSS {m_peer:.0f} MiB, network {peer[0][3]}")
    print(f"  Dice difference {d_ours - d_peer:+.4f} (target >= -0.01), speed ratio {t_peer / t_ours:.2f}x, "
          f"peak RSS ratio {m_ours / m_peer:.2f}")


if __name__ == "__main__":
    main()
