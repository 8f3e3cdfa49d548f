#!/usr/bin/env bash
# Augmentation on the GPU vs in CPU workers, on a CUDA machine (not part of `make test`; CI has no GPU).
# Sized for under 5 minutes on one H200 with 16 cores (estimate; not yet run on a GPU). Prints, for 3d_fullres on a synthetic CT-like dataset
# (6 cases of 160x224x224 at 1 mm; segkit's default plan gives a large patch), seconds per iteration and
# per 250-iteration epoch, and the ratio to the bare GPU step, for:
#   bare step (no data)          the training step on one fixed batch already on the GPU: the floor
#   segkit --augment-on device   pinned to 2 CPU cores, 2 cropping workers      (goal: <= 1.1x bare)
#   segkit --augment-on workers  pinned to 2 CPU cores, 2 augmentation workers
#   segkit --augment-on workers  all cores, default workers (12 on 16 CPUs)
#   nnunetv2                     all cores, its default workers (only if nnunetv2 is importable here)
# Usage (repository root): bash bench/gpu_device_augment.sh [--iters 40] [--cases 6] [--shape 160 224 224]
# Expects wheels of the packages the GPU image lacks in .whl/ (as bench/gpu_check.sh; nnunetv2's too
# for the peer row). Output also in $OUT/gpu_device_augment.txt.
set -euo pipefail
source "$(dirname "$0")/_gpu_env.sh"
OUT=${OUT:-/tmp/gpu_device_augment_out}; mkdir -p "$OUT"
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name() if torch.cuda.is_available() else 'no CUDA')"
python3 bench/gpu_device_augment.py "$@" 2>&1 | tee "$OUT/gpu_device_augment.txt"
