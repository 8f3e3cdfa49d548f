"""Learning at equal iterations: segkit vs nnunetv2, 3d_fullres, Hippocampus subset, fold 0, CPU.

Usage: .venv/bin/python bench/train_vs_nnunet.py [--cases 60] [--epochs 20] [--iters 50] [--val-iters 10]
                                                  [--precision auto|fp32|mixed] [--repeats 1] [--first-seed 0]
Both train ``epochs x iters`` iterations with the peer's patch and batch size and the same split,
then predict the fold's validation cases with full inference settings; prints the mean foreground
Dice of each (target: segkit >= nnunetv2 - 0.01) and the median seconds per epoch of ``iters``
training + ``val_iters`` validation iterations, divided by ``iters`` (each tool's own epoch times).
``--repeats N`` trains both N times (segkit with seeds S..S+N-1, S = ``--first-seed``; nnunetv2 seeds nothing)
and compares the means. Both train with 0 augmentation workers, on the same torch 2.13 CPU build.

Measured 2026-11-27, 60 cases (48 train / 12 validation), 20 x 50 iterations, batch 2, 2 quiet Zen 4 cores:
  fp32:  segkit 0.8558 Dice, 0.81 s/iter | nnunetv2 0.8608 Dice, 0.83 s/iter -> -0.0050, 1.02x
  bf16:  segkit 0.8545 Dice, 0.48 s/iter | nnunetv2 0.8602 Dice, 0.84 s/iter -> -0.0057, 1.77x
  bf16, two more runs (--repeats 2 --first-seed 1): segkit 0.8570, 0.8585 | nnunetv2 0.8550, 0.8541
        -> over all three bf16 runs segkit 0.8567 +- 0.0020, nnunetv2 0.8564 +- 0.0033 Dice (+0.0003),
        0.46 vs 0.85 s/iter (1.83x); run-to-run spread of either tool is larger than their difference.
In fp32 the step is the same network on the same torch: forward+backward take 0.737 s of our 0.746 s
step, the batch 9 ms, so only the loader can differ (2.1x, loader_vs_nnunet.py) and it barely shows
on CPU. bf16 autocast on a CPU with native bf16 (precision "auto") halves forward+backward.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import tempfile
from pathlib import Path

from _hippo import DATASET, peer_plan, prepare
from _peer import peer_env, peer_python

PEER_SNIPPET = """
import json, sys, torch
from nnunetv2.run.run_training import get_trainer_from_args
epochs, iters, val_iters = (int(a) for a in sys.argv[1:4])
t = get_trainer_from_args("4", "3d_fullres", 0, "nnUNetTrainer", "nnUNetPlans", device=torch.device("cpu"))
t.num_epochs, t.num_iterations_per_epoch, t.num_val_iterations_per_epoch = epochs, iters, val_iters
t.run_training()
t.perform_actual_validation()
log = getattr(t.logger, "local_logger", t.logger).my_fantastic_logging  # 2.6+: MetaLogger
times = [e - s for s, e in zip(log["epoch_start_timestamps"], log["epoch_end_timestamps"])]
print(json.dumps({"epoch_times": times}))
"""


def _foreground_dice(summary: Path) -> float:
    data = json.loads(summary.read_text())
    fg = data["foreground_mean"]
    return float(fg["Dice"] if isinstance(fg, dict) else fg)


def run_ours(paths: dict, epochs: int, iters: int, val_iters: int, batch_size: int,
             precision: str, seed: int = 0) -> tuple[float, float, str]:
    from toolkit.training.options import TrainerOptions
    from toolkit.training.setup import resolve_training
    from toolkit.training.trainer import Trainer

    setup = resolve_training(paths["raw"], paths["work"], "3d_fullres", 0)
    options = TrainerOptions(epochs=epochs, iters_per_epoch=iters, val_iters=val_iters, batch_size=batch_size,
                             num_workers=0, device="cpu", seed=seed, save_every=epochs, precision=precision)
    trainer = Trainer(setup, options)
    fold = trainer.run()
    per_iter = statistics.median(trainer.logs["epoch_time"]) / iters
    return _foreground_dice(fold / "validation" / "summary.json"), per_iter, trainer.precision


def run_peer(scratch: Path, epochs: int, iters: int, val_iters: int) -> tuple[float, float]:
    env = peer_env(scratch / "raw", scratch / "nnunet_pre", scratch / "nnunet_res", n_proc_da=0)
    done = subprocess.run([str(peer_python()), "-c", PEER_SNIPPET, str(epochs), str(iters), str(val_iters)],
                          env=env, capture_output=True, text=True, encoding="utf-8", errors="replace")
    if done.returncode:
        raise SystemExit(f"nnunetv2 training failed:\n{done.stderr[-3000:]}")
    out = done.stdout
    times = json.loads(out.strip().splitlines()[-1])["epoch_times"]
    summaries = sorted((scratch / "nnunet_res" / DATASET).glob("*/fold_0/validation/summary.json"))
    return _foreground_dice(summaries[-1]), statistics.median(times) / iters


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", type=int, default=60)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--iters", type=int, default=50)
    ap.add_argument("--val-iters", type=int, default=10)
    ap.add_argument("--precision", default="auto", choices=["auto", "fp32", "mixed"],
                    help="segkit's training precision (auto: bf16 on CPUs with native bf16); nnunetv2 trains fp32 on CPU")
    ap.add_argument("--repeats", type=int, default=1, help="train both this many times (segkit seeds S..S+N-1)")
    ap.add_argument("--first-seed", type=int, default=0, help="S: segkit's first seed (more seeds after a first run)")
    ap.add_argument("--scratch", type=Path, default=Path(tempfile.gettempdir()) / "segkit_bench_hippo")
    args = ap.parse_args()
    paths = prepare(args.scratch, args.cases)
    bs = peer_plan(args.scratch)["batch_size"]
    total = args.epochs * args.iters
    ours, peer = [], []
    for seed in range(args.first_seed, args.first_seed + args.repeats):
        for stale in (paths["work"] / DATASET / "models", args.scratch / "nnunet_res" / DATASET):
            shutil.rmtree(stale, ignore_errors=True)  # validation outputs of an earlier run must not be reused
        ours.append(run_ours(paths, args.epochs, args.iters, args.val_iters, bs, args.precision, seed))
        peer.append(run_peer(args.scratch, args.epochs, args.iters, args.val_iters))
        print(f"run {seed}: segkit {ours[-1][0]:.4f} Dice {ours[-1][1]:.2f} s/iter ({ours[-1][2]}), "
              f"nnunetv2 {peer[-1][0]:.4f} Dice {peer[-1][1]:.2f} s/iter", flush=True)
    d_ours, t_ours = statistics.mean(o[0] for o in ours), statistics.mean(o[1] for o in ours)
    d_peer, t_peer = statistics.mean(p[0] for p in peer), statistics.mean(p[1] for p in peer)
    print(f"{DATASET} fold 0, {total} iterations, batch {bs}, mean of {args.repeats} run(s):")
    print(f"  segkit   mean foreground Dice {d_ours:.4f}, {t_ours:.2f} s/iter ({ours[0][2]})")
    print(f"  nnunetv2 mean foreground Dice {d_peer:.4f}, {t_peer:.2f} s/iter (fp32: it uses AMP on CUDA only)")
    print(f"  Dice difference {d_ours - d_peer:+.4f} (target >= -0.01), speed ratio {t_peer / t_ours:.2f}x")

if __name__ == "__main__":
    main()
