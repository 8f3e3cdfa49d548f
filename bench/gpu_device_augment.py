"""Seconds per epoch of 3d_fullres training on a GPU: augmentation on the device vs in CPU workers vs nnunetv2 vs the bare step.

Run through bench/gpu_device_augment.sh on a CUDA machine; sized to finish within 5 minutes on an H200 with
16 cores (an estimate: it has only been dry-run on CPU so far, with --device cpu and tiny sizes).
Prints one line per variant, then a summary table:

    variant                         cores  workers  s/iter  s/epoch(250)  x bare
    bare step (no data)             -      -        ...
    segkit --augment-on device      2      2        ...
    segkit --augment-on workers     2      2        ...
    segkit --augment-on workers     all    default  ...
    nnunetv2 (default workers)      all    default  ...   (or: not installed)

Dataset: synthetic CT-like volumes (HU: air -1000, body ~40, organ 60, lesion 100, noise; 1 mm
isotropic), planned by segkit's default planner, which gives a large 3d_fullres patch. Each segkit
variant is ``segkit train --epochs 2 --iters-per-epoch N`` in a subprocess (pinned with taskset
where "cores" is 2); s/iter is the second epoch's time / N (the first one warms cuDNN and the
workers). The bare step trains the same network on one fixed random batch already on the GPU
(same precision, same optimizer): the floor that the data path can at best reach. Goal: the device
path with 2 cores within 1.1x of the bare step. Options: --cases, --shape, --iters, --device
(cpu for a dry run of the script itself).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATASET = "Dataset901_SynthCT"


def make_dataset(root: Path, cases: int, shape: tuple[int, int, int]) -> Path:
    """CT-like cases: a body ellipsoid in air, an organ (label 1) with a lesion (label 2)."""
    from toolkit.io.images import Geometry, write_image

    out = root / DATASET
    if (out / "dataset.json").is_file():
        return out
    rng = np.random.default_rng(0)
    grids = np.meshgrid(*[np.arange(n, dtype=np.float32) for n in shape], indexing="ij")
    for i in range(cases):
        c = np.asarray(shape) / 2 + rng.uniform(-8, 8, 3)

        def ellipsoid(center, radii):
            return sum(((g - cc) / r) ** 2 for g, cc, r in zip(grids, center, radii, strict=True)) <= 1

        body = ellipsoid(c, np.asarray(shape) * 0.42)
        organ_c = c + rng.uniform(-15, 15, 3)
        organ = ellipsoid(organ_c, rng.uniform(18, 30, 3)) & body
        lesion = ellipsoid(organ_c + rng.uniform(-5, 5, 3), rng.uniform(5, 9, 3)) & organ
        image = np.where(body, 40.0, -1000.0) + 20.0 * organ + 40.0 * lesion
        image = (image + rng.normal(0, 15, shape)).astype(np.float32)
        label = (organ.astype(np.uint8) + lesion.astype(np.uint8))
        geometry = Geometry((1.0, 1.0, 1.0), (0.0, 0.0, 0.0), tuple(np.eye(3).ravel()))
        write_image(image, geometry, out / "imagesTr" / f"ct_{i:03d}_0000.nii.gz")
        write_image(label, geometry, out / "labelsTr" / f"ct_{i:03d}.nii.gz")
    meta = {"channel_names": {"0": "CT"}, "labels": {"background": 0, "organ": 1, "lesion": 2},
            "numTraining": cases, "file_ending": ".nii.gz", "name": "SynthCT"}
    (out / "dataset.json").write_text(json.dumps(meta), encoding="utf-8")
    return out


def segkit(args: list[str], pin: str | None = None) -> subprocess.CompletedProcess:
    cmd = ([*["taskset", "-c", pin]] if pin else []) + [sys.executable, "-m", "toolkit.cli", *args]
    return subprocess.run(cmd, check=True, capture_output=True, text=True, encoding="utf-8")


def train_variant(raw: Path, work: Path, device: str, iters: int, augment_on: str, workers: int | None,
                  pin: str | None) -> float:
    """s/iter of the second epoch of a fresh 2-epoch run."""
    import torch

    fold = "all"
    model = work / DATASET / "models" / "3d_fullres" / "fold_all"
    if model.exists():
        import shutil

        shutil.rmtree(model)
    extra = ["--num-workers", str(workers)] if workers is not None else []
    segkit(["train", str(raw), "-c", "3d_fullres", "-f", fold, "--work", str(work), "--epochs", "2",
            "--iters-per-epoch", str(iters), "--val-iters", "1", "--skip-validation", "--device", device,
            "--augment-on", augment_on, *extra], pin)
    logs = torch.load(model / "checkpoint_final.pt", weights_only=True, map_location="cpu")["logs"]
    return float(logs["epoch_time"][1]) / iters


def bare_step(raw: Path, work: Path, device: str, iters: int) -> float:
    """s/iter of the training step alone on a fixed random batch already on the device."""
    import torch

    from toolkit.training.options import TrainerOptions
    from toolkit.training.setup import resolve_training
    from toolkit.training.trainer import Trainer

    setup = resolve_training(raw, work, "3d_fullres", "all")
    trainer = Trainer(setup, TrainerOptions(device=device, num_workers=0))
    shape = (trainer.batch_size, setup.in_channels, *setup.plan["patch_size"])
    batch = {"data": torch.randn(shape, device=trainer.device),
             "seg": torch.randint(0, setup.num_classes, (shape[0], 1, *shape[2:]), device=trainer.device,
                                  dtype=torch.int16)}
    for _ in range(5):
        trainer.train_step(batch)
    start = time.perf_counter()
    for _ in range(iters):
        trainer.train_step(batch)  # float(loss) synchronises every step, as in training
    return (time.perf_counter() - start) / iters


PEER_SNIPPET = """
import json, sys, time, torch
from nnunetv2.run.run_training import get_trainer_from_args
t = get_trainer_from_args("901", "3d_fullres", "all", "nnUNetTrainer", "nnUNetPlans", device=torch.device(sys.argv[2]))
t.num_epochs, t.num_iterations_per_epoch, t.num_val_iterations_per_epoch = 2, int(sys.argv[1]), 1
t.run_training()
log = t.logger.my_fantastic_logging
print(json.dumps({"epoch2": log["epoch_end_timestamps"][1] - log["epoch_start_timestamps"][1]}))
"""


def peer(raw_root: Path, scratch: Path, device: str, iters: int) -> float | str:
    """s/iter of nnunetv2's second epoch with its default workers, or why it did not run."""
    try:
        import nnunetv2  # noqa: F401
    except ImportError:
        return "not installed on this machine (put its wheels in .whl/)"
    env = dict(os.environ, nnUNet_raw=str(raw_root), nnUNet_preprocessed=str(scratch / "nnunet_pre"),
               nnUNet_results=str(scratch / "nnunet_res"))
    env.pop("nnUNet_n_proc_DA", None)
    try:
        subprocess.run([sys.executable, "-m", "nnunetv2.experiment_planning.plan_and_preprocess_entrypoints",
                        "-d", "901", "-c", "3d_fullres", "-np", "8"], env=env, check=True, capture_output=True)
        out = subprocess.run([sys.executable, "-c", PEER_SNIPPET, str(iters), device], env=env, check=True,
                             capture_output=True, text=True).stdout
    except subprocess.CalledProcessError as exc:
        return f"failed ({(exc.stderr or b'')[-300:]!r})"
    return json.loads(out.strip().splitlines()[-1])["epoch2"] / iters


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", type=int, default=6)
    ap.add_argument("--shape", type=int, nargs=3, default=[160, 224, 224])
    ap.add_argument("--iters", type=int, default=40)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--scratch", type=Path, default=Path("/tmp/gpu_device_augment"))
    args = ap.parse_args()
    raw = make_dataset(args.scratch / "raw", args.cases, tuple(args.shape))
    work = args.scratch / "work"
    for step in (["fingerprint", "-j", "8"], ["plan"], ["preprocess", "-c", "3d_fullres", "-j", "8"]):
        segkit([step[0], str(raw), "--work", str(work), *step[1:]])
    plan = json.loads((work / DATASET / "plans.json").read_text(encoding="utf-8"))["configurations"]["3d_fullres"]
    print(f"{args.cases} cases {args.shape}, patch {plan['patch_size']}, batch {plan['batch_size']}, "
          f"{args.iters} iterations per timed epoch, {os.cpu_count()} CPUs", flush=True)
    rows = [("bare step (no data)", "-", "-", bare_step(raw, work, args.device, args.iters))]
    print(rows[-1], flush=True)
    for label, augment_on, workers, pin in (("segkit --augment-on device", "device", 2, "0,1"),
                                            ("segkit --augment-on workers", "workers", 2, "0,1"),
                                            ("segkit --augment-on workers", "workers", None, None)):
        rows.append((label, "2" if pin else "all", str(workers or "default"),
                     train_variant(raw, work, args.device, args.iters, augment_on, workers, pin)))
        print(rows[-1], flush=True)
    rows.append(("nnunetv2 (default workers)", "all", "default", peer(raw.parent, args.scratch, args.device, args.iters)))
    bare = rows[0][3]
    print(f"\n{'variant':32s} {'cores':6s} {'workers':8s} {'s/iter':>8s} {'s/epoch(250)':>13s} {'x bare':>7s}")
    for label, cores, workers, value in rows:
        if isinstance(value, str):
            print(f"{label:32s} {cores:6s} {workers:8s} {value}")
        else:
            print(f"{label:32s} {cores:6s} {workers:8s} {value:8.4f} {value * 250:13.1f} {value / bare:7.2f}")


if __name__ == "__main__":
    main()
