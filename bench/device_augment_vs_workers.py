"""Augmented training batches per second on 1 and 2 CPU cores: segkit's device path vs its worker path vs nnunetv2.

Usage: .venv/bin/python bench/device_augment_vs_workers.py [--cases 40] [--batches 20] [--rounds 3] [--cores 1 2]
Every timing is a fresh subprocess pinned with ``taskset`` to the first N cores (torch and numpy
threads = N), timing ``--batches`` batches after one warm-up batch, alternating
device / workers / nnunetv2 within each round; prints medians and ratios.
- segkit device: ``augment_on="device"`` with the CPU as the device: the loader crops and draws in
  the main process (0 workers, the default on <= 2 cores), ``DeviceAugmenter`` augments the batch
  with torch ops on the N threads;
- segkit workers: the worker path in-process (0 workers: the default on <= 2 cores);
- nnunetv2 2.8.1: its training dataloader with its default ``nnUNet_n_proc_DA``
  (min(12, os.cpu_count()) = the machine's CPU count, which ignores taskset).
Same Hippocampus subset (bench/_hippo.py), the peer's 3d_fullres patch and batch size for all.
The peer venv: ``SEGKIT_PEER_VENV`` (default bench/.peer-venv, created on first use).
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

from _hippo import DATASET, peer_plan, prepare
from _peer import peer_env, peer_python
from loader_vs_nnunet import PEER_SNIPPET as LOADER_PEER_SNIPPET

# the loader bench's peer timing, with torch limited to the run's threads (argv[2])
PEER_SNIPPET = LOADER_PEER_SNIPPET.replace("import json, sys, time, torch\n",
                                           "import json, sys, time, torch\ntorch.set_num_threads(int(sys.argv[2]))\n")


def child(work: Path, raw: Path, device_path: bool, batches: int, patch: list[int], batch_size: int, threads: int) -> None:
    """One timing in this (pinned) process; prints {"seconds": ...}."""
    import torch

    torch.set_num_threads(threads)
    from toolkit.training.augment import sample_size
    from toolkit.training.device_augment import DeviceAugmentLoader
    from toolkit.training.loader import BatchLoader, BatchSpec
    from toolkit.training.sampling import PatchSpec
    from toolkit.training.setup import resolve_training

    setup = resolve_training(raw, work, "3d_fullres", 0)
    final = tuple(patch)
    spec = BatchSpec(PatchSpec(str(setup.preprocessed), setup.train_cases, final, sample_size(final),
                               batch_size, setup.labels), setup.num_classes, True, 0, 0, raw=device_path)
    loader = DeviceAugmentLoader(BatchLoader(spec, 0), "cpu") if device_path else BatchLoader(spec, 0)
    with loader:
        it = loader.batches(0, batches + 1)
        next(it)
        start = time.perf_counter()
        for _ in it:
            pass
        print(json.dumps({"seconds": time.perf_counter() - start}))


def _pinned(cores: int) -> list[str]:
    return ["taskset", "-c", ",".join(str(c) for c in range(cores))]


def _threads_env(cores: int, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(extra or os.environ)
    env.update({k: str(cores) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")})
    return env


def _seconds(cmd: list[str], env: dict[str, str]) -> float:
    done = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True, encoding="utf-8")
    return json.loads(done.stdout.strip().splitlines()[-1])["seconds"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", type=int, default=40)
    ap.add_argument("--batches", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--cores", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--scratch", type=Path, default=Path(tempfile.gettempdir()) / "segkit_bench_hippo")
    ap.add_argument("--child", choices=["device", "workers"], default=None)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    paths = prepare(args.scratch, args.cases)
    plan = peer_plan(args.scratch)
    patch, bs = plan["patch_size"], plan["batch_size"]
    if args.child:
        child(paths["work"], paths["raw"], args.child == "device", args.batches, patch, bs, args.threads)
        return
    print(f"{DATASET}: {args.cases} cases, patch {patch}, batch {bs}, {args.batches} batches per timing, "
          f"load average at start {os.getloadavg()[0]:.1f}")
    me = [sys.executable, str(Path(__file__).resolve()), "--cases", str(args.cases), "--batches", str(args.batches),
          "--scratch", str(args.scratch)]
    peer_base = peer_env(args.scratch / "raw", args.scratch / "nnunet_pre", args.scratch / "nnunet_res")
    peer_base.pop("nnUNet_n_proc_DA", None)  # the peer's default worker count
    for cores in args.cores:
        times: dict[str, list[float]] = {"device": [], "workers": [], "nnunetv2": []}
        for _ in range(args.rounds):
            for name in ("device", "workers"):
                times[name].append(_seconds([*_pinned(cores), *me, "--child", name, "--threads", str(cores)],
                                            _threads_env(cores)))
            times["nnunetv2"].append(_seconds([*_pinned(cores), str(peer_python()), "-c", PEER_SNIPPET,
                                               str(args.batches), str(cores)], _threads_env(cores, peer_base)))
        rate = {k: args.batches / statistics.median(v) for k, v in times.items()}
        print(f"{cores} core(s): device {rate['device']:.2f}, workers {rate['workers']:.2f}, nnunetv2 "
              f"{rate['nnunetv2']:.2f} batches/s; device/workers {rate['device'] / rate['workers']:.2f}x, "
              f"device/nnunetv2 {rate['device'] / rate['nnunetv2']:.2f}x, workers/nnunetv2 "
              f"{rate['workers'] / rate['nnunetv2']:.2f}x (rounds, batches/s: "
              f"{ {k: [round(args.batches / t, 1) for t in v] for k, v in times.items()} })")
    print(f"load average at end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
