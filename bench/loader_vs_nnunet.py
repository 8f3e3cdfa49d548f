"""Augmented training batches per second: segkit's loader vs nnunetv2's, same data and worker count.

Usage: .venv/bin/python bench/loader_vs_nnunet.py [--cases 40] [--workers 0 2] [--batches 30] [--rounds 3]
Rounds alternate segkit / nnunetv2 (A B A B ...), each timing ``--batches`` batches after a warm-up
batch, for every worker count; prints medians and the ratio ours/peer (target >= 1.5x).
Patch and batch size are the peer's 3d_fullres plan for both. Workers 0 means in-process for both
(nnU-Net: nnUNet_n_proc_DA=0 gives its single-threaded augmenter).

Measured (2-core CPU shared with other jobs, load average 3.5-5, so single rounds scatter by 2x;
Hippocampus, 20 cases, patch [40, 56, 40], batch 2):
- with the batchgenerators v1 pipeline (cubic map_coordinates): workers 0: 11.67 vs 20.66 batches/s, 0.56x;
- with toolkit.training.transforms (grid_sample, separable low-res, explicit generators),
  ``--batches 30 --rounds 5``: workers 0: segkit 103.49 vs nnunetv2 49.27 batches/s, 2.10x;
  workers 2: 79.05 vs 38.12 batches/s, 2.07x. Earlier runs of the same code with ``--rounds 3``:
  workers 0 3.24x and 2.12x, workers 2 1.86x and 1.47x (the peer's median moved 25 -> 43 batches/s
  between runs: the machine's load, not the code).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from _hippo import DATASET, peer_plan, prepare
from _peer import peer_env, peer_python

PEER_SNIPPET = """
import json, sys, time, torch
from nnunetv2.run.run_training import get_trainer_from_args
t = get_trainer_from_args("4", "3d_fullres", 0, "nnUNetTrainer", "nnUNetPlans", device=torch.device("cpu"))
t.initialize()
train, _ = t.get_dataloaders()
next(train)
start = time.perf_counter()
for _ in range(int(sys.argv[1])):
    next(train)
print(json.dumps({"seconds": time.perf_counter() - start}))
"""


def ours(work: Path, raw: Path, workers: int, batches: int, patch: list[int], batch_size: int) -> float:
    from toolkit.training.augment import sample_size
    from toolkit.training.loader import BatchLoader, BatchSpec
    from toolkit.training.sampling import PatchSpec
    from toolkit.training.setup import resolve_training

    setup = resolve_training(raw, work, "3d_fullres", 0)
    final = tuple(patch)
    spec = BatchSpec(PatchSpec(str(setup.preprocessed), setup.train_cases, final, sample_size(final),
                               batch_size, setup.labels), setup.num_classes, True, 0, 0)
    with BatchLoader(spec, workers) as loader:
        it = loader.batches(0, batches + 1)
        next(it)
        start = time.perf_counter()
        for _ in it:
            pass
        return time.perf_counter() - start


def peer(scratch: Path, workers: int, batches: int) -> float:
    env = peer_env(scratch / "raw", scratch / "nnunet_pre", scratch / "nnunet_res", n_proc_da=workers)
    out = subprocess.run([str(peer_python()), "-c", PEER_SNIPPET, str(batches)], env=env, check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])["seconds"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", type=int, default=40)
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    ap.add_argument("--batches", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--scratch", type=Path, default=Path(tempfile.gettempdir()) / "segkit_bench_hippo")
    args = ap.parse_args()
    paths = prepare(args.scratch, args.cases)
    plan = peer_plan(args.scratch)
    patch, bs = plan["patch_size"], plan["batch_size"]
    print(f"{DATASET}: {args.cases} cases, patch {patch}, batch {bs}, {args.batches} batches per timing")
    for w in args.workers:
        a, b = [], []
        for _ in range(args.rounds):
            a.append(args.batches / ours(paths["work"], paths["raw"], w, args.batches, patch, bs))
            b.append(args.batches / peer(args.scratch, w, args.batches))
        ma, mb = statistics.median(a), statistics.median(b)
        print(f"workers {w}: segkit {ma:.2f} batches/s, nnunetv2 {mb:.2f} batches/s, ratio {ma / mb:.2f}x "
              f"(rounds: segkit {[round(x, 2) for x in a]}, nnunetv2 {[round(x, 2) for x in b]})")


if __name__ == "__main__":
    main()
