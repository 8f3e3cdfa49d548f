"""Region training below the training loop: segkit vs nnunetv2 2.8.1 on the same tensors and the same data.

Usage: SEGKIT_PEER_VENV=... .venv/bin/python bench/regions_pipeline_vs_nnunet.py [--batches 200]

A training comparison (bench/regions_vs_nnunet.py) cannot tell a small defect from chance on four BraTS
cases: two runs of one tool differ by more than the tools do. This checks the two parts of region training
that decide what is learnt, directly against nnunetv2's own code (imported in the peer venv, segkit's
modules put on its path):

1. The loss. Random logits for 4 deep-supervision heads (2d, 3 regions), a random label map with values
   0-4 and -1 (outside the non-zero mask): segkit's ``deep_supervision_loss`` with the BraTS region targets
   against nnunetv2's ``DeepSupervisionWrapper(DC_and_BCE_loss(batch_dice=True, do_bg=True))``, both with
   nnunetv2's head weights (1/2^i, the lowest head 0, normalised), on region targets downsampled per head by ``nearest`` (segkit's rule;
   nnunetv2's DownsampleSegForDSTransform uses ``nearest-exact``, the other pixel of each 2x2 block, printed
   too). Equal losses mean equal BCE, Dice, batch Dice, head weights and region targets.
2. The batches. The four labelled BraTS 2015 cases as one region dataset (bench/regions_vs_nnunet.py
   ``prepare``: each tool plans and preprocesses it itself), fold 0's three training cases, 2d, batch 2:
   ``--batches`` training batches of each tool's loader with its full augmentation (segkit's worker path
   in-process; nnunetv2's ``get_dataloaders`` with nnUNet_n_proc_DA=0). Printed per region: the fraction
   of patch voxels in the region and of samples that contain it (foreground oversampling over the union of
   regions, the random slice, rotation/scaling and the region conversion all act on these), and the mean
   and standard deviation of each image channel (normalisation + intensity augmentation).

Measured 2026-11-30 (bench/README.md "Region training vs nnunetv2 (BraTS)"): see there.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from _peer import peer_env, peer_python
from _train_pair import REPO, peer_plans_with_batch

LOSS = """
import json, numpy as np, torch, torch.nn.functional as F
from nnunetv2.training.loss.compound_losses import DC_and_BCE_loss
from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper
from nnunetv2.training.loss.dice import MemoryEfficientSoftDiceLoss
from toolkit.training.loss import deep_supervision_loss
from toolkit.training.targets import TrainingTargets
torch.manual_seed(0)
regions = [(1, 2, 3, 4), (1, 3, 4), (4,)]
shapes = [(64, 64), (32, 32), (16, 16), (8, 8)]
w = np.array([1 / 2 ** i for i in range(len(shapes))]); w[-1] = 0; w = w / w.sum()
seg = torch.randint(0, 5, (2, 1, 64, 64)); seg[:, :, :10] = -1
outs = [torch.randn(2, 3, *s) * 2 for s in shapes]
ours = deep_supervision_loss(outs, seg, list(w), True, None, TrainingTargets(3, ("wt", "tc", "et"), regions, None))
peer = DeepSupervisionWrapper(DC_and_BCE_loss({}, {"batch_dice": True, "do_bg": True, "smooth": 1e-5, "ddp": False},
                                              use_ignore_label=False, dice_class=MemoryEfficientSoftDiceLoss), w)
def targets(mode):
    out = []
    for s in shapes:
        d = F.interpolate(seg.float(), size=s, mode=mode)
        out.append(torch.cat([torch.isin(d, torch.tensor(r, dtype=d.dtype)).float() for r in regions], 1))
    return out
print(json.dumps({"segkit": float(ours), "nnunetv2 nearest": float(peer(outs, targets("nearest"))),
                  "nnunetv2 nearest-exact": float(peer(outs, targets("nearest-exact")))}))
"""

STATS = """
def stats(batches):
    import numpy as np
    fr, has, mean, std = [], [], [], []
    for data, regions in batches:  # (b, c, y, x) float, (b, R, y, x) 0/1
        fr.append(regions.mean((0, 2, 3))); has.append((regions.sum((2, 3)) > 0).mean(0))
        mean.append(data.mean((0, 2, 3))); std.append(data.std((0, 2, 3)))
    return {k: np.mean(v, 0).round(4).tolist() for k, v in
            {"voxel fraction": fr, "samples containing": has, "channel mean": mean, "channel std": std}.items()}
"""

OURS_BATCHES = STATS + """
import json, sys, numpy as np, torch
from toolkit.training.data import make_loaders
from toolkit.training.loss import region_targets
from toolkit.training.options import TrainerOptions
from toolkit.training.setup import resolve_training
raw, work, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
setup = resolve_training(raw, work, "2d", 0)
train, _ = make_loaders(setup, TrainerOptions(batch_size=2, num_workers=0, device="cpu", seed=0), 2, 0)
def batches():
    for b in train.batches(0, n):
        seg = torch.as_tensor(np.asarray(b["seg"])).long()
        yield np.asarray(b["data"]), region_targets(seg, setup.targets.regions).numpy()
print(json.dumps(stats(batches())))
"""

PEER_BATCHES = STATS + """
import json, sys, torch
from nnunetv2.run.run_training import get_trainer_from_args
plans, n = sys.argv[1], int(sys.argv[2])
t = get_trainer_from_args("15", "2d", 0, "nnUNetTrainer", plans, device=torch.device("cpu"))
t.initialize()
train, _ = t.get_dataloaders()
def batches():
    for _ in range(n):
        b = next(train)
        yield b["data"].numpy(), b["target"][0].float().numpy()
print(json.dumps(stats(batches())))
"""


def _last_json(cmd: list[str], env: dict) -> dict:
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, encoding="utf-8", errors="replace")
    if done.returncode:
        raise SystemExit(f"{cmd[0]} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, default=200)
    ap.add_argument("--scratch", type=Path, default=Path(tempfile.gettempdir()) / "segkit_bench_brats")
    args = ap.parse_args()
    from regions_vs_nnunet import DATASET, prepare

    path_env = {"PYTHONPATH": str(REPO)}
    loss = _last_json([str(peer_python()), "-c", LOSS], {**peer_env(*(args.scratch / d for d in
                                                                     ("raw", "nnunet_pre", "nnunet_res"))), **path_env})
    print("1. region loss (4 heads, batch Dice) on the same logits and targets:")
    for k, v in loss.items():
        print(f"   {k:<24} {v:.10f}")
    raw, work = prepare(args.scratch, "2d")
    folder = args.scratch / "nnunet_pre" / DATASET
    plans = peer_plans_with_batch(folder, "nnUNetPlans", "2d", 2)
    ours = _last_json([sys.executable, "-c", OURS_BATCHES, str(raw), str(work), str(args.batches)],
                      {**os.environ, **path_env})
    peer = _last_json([str(peer_python()), "-c", PEER_BATCHES, plans, str(args.batches)],
                      peer_env(raw.parent, folder.parent, args.scratch / "nnunet_res", n_proc_da=0))
    print(f"2. {args.batches} training batches of 2 (2d, fold 0, augmented), segkit / nnunetv2:")
    print("   regions: whole tumour, tumour core, enhancing tumour; channels: FLAIR, T1c")
    for key in ours:
        pairs = "  ".join(f"{a:.4f} / {b:.4f}" for a, b in zip(ours[key], peer[key], strict=True))
        print(f"   {key:<20} {pairs}")


if __name__ == "__main__":
    main()
