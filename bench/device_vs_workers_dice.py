"""Learning at equal iterations: ``--augment-on device`` vs ``--augment-on workers``, Hippocampus, fold 0, CPU.

Usage: .venv/bin/python bench/device_vs_workers_dice.py [--cases 40] [--epochs 10] [--iters 50] [--val-iters 5]
                                                         [--seeds 0] [--precision auto]
Both paths train ``epochs x iters`` iterations from the same seed(s) (same split, plan, network init and
patch draws; the augmentation parameters agree draw for draw up to the first noise draw of a sample,
docs/augmentation.md "Augmentation on the training device"), then predict fold 0's validation cases with
full inference settings; prints the mean foreground Dice of each and the median s/iteration. Each
training is ``segkit train`` in its own subprocess with 0 loader workers, in its own copy of the work
directory. Goal: the same Dice within run-to-run noise (see bench/train_vs_nnunet.py for that noise:
about +-0.002 between seeds at 1000 iterations).

Measured (2 shared cores, 40 cases, --epochs 8 --iters 40 --val-iters 2 --seeds 0, bf16): device 0.5512,
workers 0.5521 mean foreground Dice (-0.0009); last-epoch training loss -0.4861 vs -0.4868.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from _hippo import DATASET, REPO, prepare
from _train_pair import foreground_dice


def train(raw: Path, work: Path, augment_on: str, args: argparse.Namespace, seed: int) -> tuple[float, float]:
    """(mean foreground Dice on fold 0's validation cases, median s/iter) of one run."""
    fold = work / DATASET / "models" / "3d_fullres" / "fold_0"
    if fold.exists():
        shutil.rmtree(fold)
    cmd = [sys.executable, "-m", "toolkit.cli", "train", str(raw), "-c", "3d_fullres", "-f", "0", "--work", str(work),
           "--epochs", str(args.epochs), "--iters-per-epoch", str(args.iters), "--val-iters", str(args.val_iters),
           "--num-workers", "0", "--device", "cpu", "--seed", str(seed), "--precision", args.precision,
           "--augment-on", augment_on]
    subprocess.run(cmd, check=True, cwd=REPO, stdout=subprocess.DEVNULL)
    logs = torch.load(fold / "checkpoint_final.pt", weights_only=True, map_location="cpu")["logs"]
    return foreground_dice(fold / "validation" / "summary.json"), statistics.median(logs["epoch_time"]) / args.iters


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", type=int, default=40)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--iters", type=int, default=50)
    ap.add_argument("--val-iters", type=int, default=5)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--scratch", type=Path, default=Path(tempfile.gettempdir()) / "segkit_bench_hippo")
    args = ap.parse_args()
    paths = prepare(args.scratch, args.cases)
    results: dict[str, list[tuple[float, float]]] = {"device": [], "workers": []}
    for seed in args.seeds:
        for augment_on in ("device", "workers"):  # alternating, each in its own work directory
            work = args.scratch / f"work_{augment_on}"
            if not work.is_dir():
                shutil.copytree(paths["work"], work, ignore=shutil.ignore_patterns("models"))
            results[augment_on].append(train(paths["raw"], work, augment_on, args, seed))
            print(f"seed {seed} {augment_on}: Dice {results[augment_on][-1][0]:.4f}, "
                  f"{results[augment_on][-1][1]:.3f} s/iter", flush=True)
    for name, rows in results.items():
        print(f"{name}: mean Dice {statistics.mean(r[0] for r in rows):.4f} over seeds {args.seeds}, "
              f"median {statistics.median(r[1] for r in rows):.3f} s/iter")
    dev, wrk = (statistics.mean(r[0] for r in results[k]) for k in ("device", "workers"))
    print(f"difference device - workers: {dev - wrk:+.4f} Dice ({args.epochs} x {args.iters} iterations)")


if __name__ == "__main__":
    main()
