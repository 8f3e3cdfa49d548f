"""Learning at equal iterations: segkit vs nnunetv2, 3d_fullres, Hippocampus subset, fold 0, CPU.

Usage: .venv/bin/python bench/train_vs_nnunet.py [--cases 60] [--epochs 10] [--iters 50] [--val-iters 10]
Both train ``epochs x iters`` iterations with the peer's patch and batch size and the same split,
then predict the fold's validation cases with full inference settings; prints the mean foreground
Dice of each (target: segkit >= nnunetv2 - 0.01) and the median seconds per training iteration
(from each tool's own epoch times). Takes long on CPU (hours for the defaults on 2 cores).
"""

from __future__ import annotations

import argparse
import json
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
             precision: str) -> tuple[float, float, str]:
    from toolkit.training.options import TrainerOptions
    from toolkit.training.setup import resolve_training
    from toolkit.training.trainer import Trainer

    setup = resolve_training(paths["raw"], paths["work"], "3d_fullres", 0)
    options = TrainerOptions(epochs=epochs, iters_per_epoch=iters, val_iters=val_iters, batch_size=batch_size,
                             num_workers=0, device="cpu", seed=0, save_every=epochs, precision=precision)
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
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--iters", type=int, default=50)
    ap.add_argument("--val-iters", type=int, default=10)
    ap.add_argument("--precision", default="auto", choices=["auto", "fp32", "mixed"],
                    help="segkit's training precision (auto: bf16 on CPUs with native bf16); nnunetv2 trains fp32 on CPU")
    ap.add_argument("--scratch", type=Path, default=Path(tempfile.gettempdir()) / "segkit_bench_hippo")
    args = ap.parse_args()
    paths = prepare(args.scratch, args.cases)
    bs = peer_plan(args.scratch)["batch_size"]
    total = args.epochs * args.iters
    d_ours, t_ours, precision = run_ours(paths, args.epochs, args.iters, args.val_iters, bs, args.precision)
    d_peer, t_peer = run_peer(args.scratch, args.epochs, args.iters, args.val_iters)
    print(f"{DATASET} fold 0, {total} iterations, batch {bs}:")
    print(f"  segkit   mean foreground Dice {d_ours:.4f}, {t_ours:.2f} s/iter ({precision})")
    print(f"  nnunetv2 mean foreground Dice {d_peer:.4f}, {t_peer:.2f} s/iter (fp32: it uses AMP on CUDA only)")
    print(f"  Dice difference {d_ours - d_peer:+.4f} (target >= -0.01), speed ratio {t_peer / t_ours:.2f}x")


if __name__ == "__main__":
    main()
